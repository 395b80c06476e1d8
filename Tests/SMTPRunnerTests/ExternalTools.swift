import Foundation

/// Other programs the tests drive (swaks, python3, smtp-source, tcpdump).
enum ExternalTools {
    /// The program's path: on PATH, or in /usr/sbin (where Postfix puts smtp-source).
    static func path(_ name: String) -> String? {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init)
        return (directories + ["/usr/sbin"]).map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func installed(_ name: String) -> Bool { self.path(name) != nil }

    /// Runs the program to its end with `input` on standard input; `nil`
    /// when it is not installed. Standard output and error come back together.
    static func run(_ name: String, _ arguments: [String], input: String? = nil, environment: [String: String] = [:]) throws
        -> (status: Int32, output: String)?
    {
        guard let path = self.path(name) else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let stdin = Pipe()
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try? stdin.fileHandleForWriting.close()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
