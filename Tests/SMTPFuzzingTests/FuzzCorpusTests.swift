import Foundation
import SMTPFuzzing
import SMTPTestSupport
import Testing

/// Every seed and every input a fuzzer ever crashed on, through the same
/// harness the fuzz targets run: a crash found once stays fixed, and the
/// harness cannot rot between fuzzing runs. Crash inputs live in
/// `fixtures/fuzz/regressions/TARGET/`, seeds in `fixtures/fuzz/TARGET/`.
@Suite struct FuzzCorpusTests {
    static func inputs(_ target: FuzzHarness.Target) -> [String] {
        ["fixtures/fuzz/\(target.rawValue)", "fixtures/fuzz/regressions/\(target.rawValue)"].flatMap { folder in
            let path = Repository.root + "/" + folder
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            return names.sorted().map { path + "/" + $0 }
        }
    }

    @Test(arguments: FuzzHarness.Target.allCases)
    func everySeedAndRegressionRunsClean(_ target: FuzzHarness.Target) throws {
        let inputs = Self.inputs(target)
        #expect(!inputs.isEmpty, "fixtures/fuzz/\(target.rawValue) has no seeds")
        for path in inputs {
            let data = try #require(FileManager.default.contents(atPath: path))
            Array(data).withUnsafeBufferPointer { FuzzHarness.run(target, $0) }
        }
    }

    /// The capture seeds are read as the fuzzer reads them, not skipped as garbage.
    @Test func captureSeedsHoldSessions() throws {
        var sessions = 0
        for path in Self.inputs(.capture) {
            let data = try #require(FileManager.default.contents(atPath: path))
            sessions += Array(data).withUnsafeBufferPointer { FuzzHarness.capture($0) }
        }
        #expect(sessions >= Self.inputs(.capture).count)
    }

    /// The server seeds reach the state machine: each is answered past the greeting.
    @Test func serverSeedsAreAnswered() throws {
        for path in Self.inputs(.server) {
            let data = try #require(FileManager.default.contents(atPath: path))
            let written = Array(data).withUnsafeBufferPointer { FuzzHarness.server($0) }
            #expect(written > 100, "\(path): the server wrote \(written) octets")
        }
    }

    /// Inputs written for the bugs issue 12 lists, kept beside the fuzzers' own.
    @Test func knownHostileInputsRunClean() {
        let cases: [(FuzzHarness.Target, String)] = [
            (.commands, "BDAT 9223372036854775807 LAST\r\nX"),
            (.commands, "BDAT -9\r\nBDAT -5000 LAST\r\n"),
            (.server, "\u{0}EHLO x.example\r\nBDAT 9223372036854775807 LAST\r\nX"),
            (.server, "\u{0}" + String(repeating: "NOOP\r\n", count: 2000)),
            (.replies, "250-x\r\n" + String(repeating: "250-more\r\n", count: 3000)),
        ]
        for (target, text) in cases {
            Array(text.utf8).withUnsafeBufferPointer { FuzzHarness.run(target, $0) }
        }
    }
}
