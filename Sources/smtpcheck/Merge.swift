import ArgumentParser
import Foundation
import SMTPPolicy
import SMTPReport
import SMTPScenarios

extension SMTPCheck {
    struct Merge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Join the parts of a sharded run (--shard I/N --format json) into one report of any format.",
            discussion: """
                Every part of the run must be given, once: a missing, doubled or unfinished part is an error (exit 65), \
                never a smaller green report. The cases come out in the order the unsharded run has them; a prelude case \
                that several parts report is reported once. The exit code is the run's: 0, 1 or 2.
                """)

        @Argument(
            help: "The parts: JSON Lines files written with --shard I/N --format json.", completion: .file(extensions: ["json", "jsonl"]))
        var parts: [String]

        @OptionGroup var report: ReportOptions

        func validate() throws {
            if self.parts.isEmpty { throw ValidationError("give the parts to merge") }
            for part in self.parts where !FileManager.default.isReadableFile(atPath: part) {
                throw ValidationError("cannot read \(part)")
            }
        }

        func run() async throws {
            let index: ShardIndex
            do {
                index = try ShardIndex(self.parts)
            } catch {
                StandardStreams.err("smtpcheck: \(error)\n")
                throw ExitCode(ExitCodes.badInput)
            }
            var heading = RunHeading(
                target: index.target, policy: index.policy, profile: index.profile, count: index.cases.count,
                groupedByFile: index.grouped, idWidth: index.idWidth)
            heading.suiteName = self.report.junitSuiteName
            var writer = try self.report.writer(heading, started: Date(timeIntervalSinceNow: -index.duration))
            do {
                try index.each { writer.add($0) }
            } catch {
                StandardStreams.err("smtpcheck: \(error)\n")
                throw ExitCode(ExitCodes.badInput)
            }
            writer.finish(duration: index.duration)
            ReportOptions.warnIfNothingTested(writer.tally)
            if writer.tally.exitCode != 0 { throw ExitCode(writer.tally.exitCode) }
        }
    }
}

/// Where every case of every part is: its place in the whole run and its
/// line's bytes in its file. Cases are read back one at a time, so merging
/// takes memory for the index (some tens of octets a case), not the cases.
struct ShardIndex {
    struct Entry {
        var place: CaseResult.Place
        var id: String
        var part: Int
        var offset: UInt64
        var length: Int
    }

    struct Problem: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    let paths: [String]
    private(set) var cases: [Entry] = []
    private(set) var target = ""
    private(set) var policy = ""
    private(set) var profile = Profile.documented
    private(set) var grouped = false
    /// The longest part's: the parts ran side by side.
    private(set) var duration = 0.0
    private(set) var idWidth = 0

    /// What is read of each line to index it.
    private struct Peek: Decodable {
        var type: String
        var result: Result?
        var shard: String?
        var target: String?
        var policy: String?
        var profile: String?
        var grouped: Bool?
        var duration: Double?

        struct Result: Decodable {
            var place: CaseResult.Place?
            var scenario: Scenario
            struct Scenario: Decodable { var id: String }
        }
    }

    private struct Whole: Decodable { var result: CaseResult }

    init(_ paths: [String]) throws(Problem) {
        self.paths = paths
        var shards: [Int: String] = [:]
        var count: Int?
        let decoder = JSONDecoder()
        for (part, path) in paths.enumerated() {
            var summary: Peek?
            var summaryShard: Shard?
            var entries: [Entry] = []
            var problem: Problem?
            let read = LineReader.each(path) { number, offset, line in
                guard !line.allSatisfy({ $0 == 0x20 || $0 == 0x0D }) else { return true }
                guard let peek = try? decoder.decode(Peek.self, from: Data(line)) else {
                    problem = Problem("\(path):\(number): not a line of smtpcheck's JSON Lines")
                    return false
                }
                switch peek.type {
                case "case":
                    guard let result = peek.result, let place = result.place else {
                        problem = Problem(
                            "\(path):\(number): a case without its whole record: write the parts with --shard I/N --format json")
                        return false
                    }
                    entries.append(Entry(place: place, id: result.scenario.id, part: part, offset: offset, length: line.count))
                case "summary":
                    guard let text = peek.shard, let shard = Shard(argument: text) else {
                        problem = Problem(
                            "\(path):\(number): not a part of a sharded run (its summary names no shard): run with --shard I/N")
                        return false
                    }
                    summary = peek
                    summaryShard = shard
                default:
                    break
                }
                return true
            }
            if let problem { throw problem }
            if let read { throw Problem("\(path): \(read)") }
            guard let summary, let shard = summaryShard else {
                throw Problem("\(path): no summary line: the part did not finish (or is not smtpcheck's JSON Lines)")
            }
            if let count, count != shard.count {
                throw Problem("\(path) is part \(shard) but \(paths[0]) is of \(count): parts of one run have the same N")
            }
            count = shard.count
            if let other = shards[shard.index] { throw Problem("\(other) and \(path) are both part \(shard)") }
            shards[shard.index] = path
            let profile = summary.profile.flatMap(Profile.init(rawValue:)) ?? .documented
            if part == 0 {
                self.target = summary.target ?? ""
                self.policy = summary.policy ?? ""
                self.profile = profile
                self.grouped = summary.grouped ?? false
            } else if summary.target != self.target || summary.policy != self.policy || profile != self.profile {
                throw Problem(
                    "\(path) is of another run (\(summary.target ?? "?"), policy \(summary.policy ?? "?")) than \(paths[0]) (\(self.target), policy \(self.policy))"
                )
            }
            self.duration = max(self.duration, summary.duration ?? 0)
            self.cases += entries
        }
        if let count {
            let missing = (1...count).filter { shards[$0] == nil }
            if !missing.isEmpty {
                throw Problem("part\(missing.count == 1 ? "" : "s") \(missing.map { "\($0)/\(count)" }.joined(separator: ", ")) missing")
            }
        }
        // In the unsharded run's order; a prelude that several parts ran is reported once.
        self.cases.sort { ($0.place, $0.part, $0.offset) < ($1.place, $1.part, $1.offset) }
        var seen = Set<String>()
        self.cases.removeAll { entry in
            guard entry.place.item < 0 else { return false }
            return !seen.insert("\(entry.place.suite) \(entry.id)").inserted
        }
        self.idWidth = self.cases.map(\.id.count).max() ?? 0
    }

    /// Each case, decoded from its line, in order.
    func each(_ body: (CaseResult) -> Void) throws(Problem) {
        var handles: [Int: FileHandle] = [:]
        defer { for handle in handles.values { try? handle.close() } }
        let decoder = JSONDecoder()
        for entry in self.cases {
            let path = self.paths[entry.part]
            if handles[entry.part] == nil {
                // Few parts stay open; a fleet of hundreds is opened as read.
                if handles.count >= 64, let (part, handle) = handles.first {
                    try? handle.close()
                    handles[part] = nil
                }
                guard let handle = FileHandle(forReadingAtPath: path) else { throw Problem("\(path): cannot be read") }
                handles[entry.part] = handle
            }
            guard let handle = handles[entry.part], (try? handle.seek(toOffset: entry.offset)) != nil,
                let data = try? handle.read(upToCount: entry.length), data.count == entry.length
            else { throw Problem("\(path): changed while it was merged") }
            do {
                body(try decoder.decode(Whole.self, from: data).result)
            } catch {
                throw Problem("\(path): the case \(entry.id) cannot be read back: \(error)")
            }
        }
    }
}

/// A file's lines with their numbers and byte offsets, read a megabyte at a
/// time; a line may be as long as it is.
enum LineReader {
    /// Calls `body(number, offset, line)` for each line (without its LF)
    /// until it returns false; the error's words if the file cannot be read.
    static func each(_ path: String, _ body: (Int, UInt64, ArraySlice<UInt8>) -> Bool) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return "cannot be read" }
        defer { try? handle.close() }
        var buffer: [UInt8] = []
        var start: UInt64 = 0
        var number = 0
        while true {
            let chunk: Data
            do {
                chunk = try handle.read(upToCount: 1 << 20) ?? Data()
            } catch {
                return "\(error)"
            }
            if chunk.isEmpty { break }
            buffer += chunk
            var lineStart = 0
            while let newline = buffer[lineStart...].firstIndex(of: 0x0A) {
                number += 1
                guard body(number, start, buffer[lineStart..<newline]) else { return nil }
                start += UInt64(newline + 1 - lineStart)
                lineStart = newline + 1
            }
            buffer.removeFirst(lineStart)
        }
        if !buffer.isEmpty {
            number += 1
            _ = body(number, start, buffer[...])
        }
        return nil
    }
}
