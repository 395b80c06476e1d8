import Foundation

/// Golden files under `fixtures/golden/`: text a test compares its output
/// with. With `RECORD_GOLDEN=1` in the environment the file is written
/// instead, and the comparison fails on purpose, so that a recorded file is
/// always looked at before it is trusted (`make golden` records them all).
public enum Golden {
    public static var folder: String { Repository.root + "/fixtures/golden" }

    public static var recording: Bool { ProcessInfo.processInfo.environment["RECORD_GOLDEN"] == "1" }

    /// `nil` when `text` is what `name` holds; otherwise what differs, or
    /// that the file was recorded.
    public static func compare(_ text: String, _ name: String) -> String? {
        let path = "\(self.folder)/\(name)"
        if self.recording {
            try? FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else { return "cannot write \(path)" }
            return "recorded \(name): review it, then run the tests without RECORD_GOLDEN"
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            return "\(name) is missing: record it with `make golden`"
        }
        let golden = String(decoding: data, as: UTF8.self)
        guard golden != text else { return nil }
        let want = golden.split(separator: "\n", omittingEmptySubsequences: false)
        let have = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (index, (a, b)) in zip(want, have).enumerated() where a != b {
            return "\(name) differs at line \(index + 1):\n  golden: \(a)\n  now:    \(b)\n(`make golden` records it anew)"
        }
        return "\(name) has \(want.count) lines, the output \(have.count) (`make golden` records it anew)"
    }
}
