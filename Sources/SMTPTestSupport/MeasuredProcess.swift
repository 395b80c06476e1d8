import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Runs a program to its end and reports what it used: its exit status, its
/// output (standard output and error, through a file), its wall time and its
/// own peak resident size, from `wait4`.
///
/// The program is started by a small Python parent that forks, execs it and
/// reads `wait4`: Linux keeps, across exec, the peak of the memory the child
/// was forked with, so a child spawned straight from a large test process
/// would report that process's size (about 165 MB in the full suite), not
/// its own. Python's own few megabytes are the bound on that error.
public struct MeasuredProcess: Sendable {
    static let spawner = """
        import os, sys
        pid = os.fork()
        if pid == 0:
            os.execv(sys.argv[1], sys.argv[1:])
        _, status, usage = os.wait4(pid, 0)
        sys.stderr.write("\\nmeasured-peak-kb %d\\n" % usage.ru_maxrss)
        sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
        """

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later),
    /// which Swift's Glibc module does not import; `nil` without it.
    private static let addCloseFrom = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map {
        unsafeBitCast($0, to: AddCloseFrom.self)
    }

    public var status: Int32
    public var output: String
    public var seconds: Double
    public var peakResidentKilobytes: Int

    /// Runs in the current directory.
    public static func run(_ executable: String, _ arguments: [String]) throws -> MeasuredProcess {
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("measured-\(UUID().uuidString).out").path
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Only the three standard streams go to the child: a descriptor the
        // parent holds (the read end of another test's pipe, say) would keep
        // that pipe open for as long as the child lives.
        let closing = Self.addCloseFrom?(&actions, 3) ?? ENOSYS
        guard closing == 0 else { throw POSIXError(POSIXErrorCode(rawValue: closing) ?? .ENOSYS) }
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        let python = "/usr/bin/python3"
        let argv = ([python, "-c", Self.spawner, executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var environment = ProcessInfo.processInfo.environment
        environment["NO_COLOR"] = "1"
        environment.removeValue(forKey: "SMTPCHECK_PASSWORD")
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        let start = ContinuousClock.now
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, python, &actions, nil, argv, envp)
        guard spawned == 0 else { throw POSIXError(POSIXErrorCode(rawValue: spawned) ?? .ENOENT) }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 {
            guard errno == EINTR else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .ECHILD) }
        }
        let elapsed = ContinuousClock.now - start
        var output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        var peak = 0
        if let range = output.range(of: "\nmeasured-peak-kb ", options: .backwards) {
            peak = Int(output[range.upperBound...].prefix { $0.isNumber }) ?? 0
            output = String(output[..<range.lowerBound])
        }
        // WIFEXITED / WEXITSTATUS, spelled out (the macros are not imported).
        let exited = status & 0x7F == 0
        return MeasuredProcess(
            status: exited ? (status >> 8) & 0xFF : 128 + (status & 0x7F), output: output,
            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, peakResidentKilobytes: peak)
    }
}

/// How the suite is being run.
public enum TestEnvironment {
    /// Under a sanitizer (`make test-asan`, `make test-tsan` set
    /// SMTPCHECK_SANITIZER): time and peak-memory bounds do not hold there
    /// (ASan's shadow memory alone is hundreds of megabytes), so tests that
    /// measure them check the behaviour and the reason only.
    public static let sanitized = ProcessInfo.processInfo.environment["SMTPCHECK_SANITIZER"] != nil
}

/// Runs blocking work (waiting for a process, a blocking socket) on a
/// thread of its own, not on Swift concurrency's cooperative pool: that pool
/// has a thread per core, and a test blocking them starves every other test
/// running beside it (their connects and time-outs stall).
public func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}
