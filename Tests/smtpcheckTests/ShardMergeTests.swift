import Foundation
import SMTPTestSupport
import Testing

/// Issue 13, part 9: a run split with `--shard I/N` and joined with
/// `smtpcheck merge` is the unsharded run; several targets are several suites.
@Suite(.serialized) struct ShardMergeTests {
    static func folder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-shards-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// The JSON Lines records of a report: its cases (by suite and id) and its summary.
    struct Report {
        var cases: [String: [String: Any]] = [:]
        var order: [String] = []
        var summary: [String: Any] = [:]

        init(_ text: String) {
            for line in text.split(separator: "\n") {
                guard let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
                if record["type"] as? String == "summary" { self.summary = record }
                guard record["type"] as? String == "case", let id = record["id"] as? String else { continue }
                let key = "\(record["suite"] as? String ?? record["file"] as? String ?? "") \(id)"
                self.cases[key] = record
                self.order.append(key)
            }
        }

        /// What a case's judgement is, without what differs from run to run
        /// (durations, ports, times): verdict, reason, and each failure.
        func verdicts(replacing ports: [String: String] = [:]) -> [String: String] {
            self.cases.mapValues { record in
                let failures = (record["failures"] as? [[String: Any]] ?? []).map {
                    "\($0["step"] ?? "-") \($0["rule"] ?? "-") \($0["expected"] ?? "")"
                }
                return "\(record["verdict"] ?? "") \(record["reason"] ?? "") \(failures.joined(separator: "; "))"
            }
        }

        func counts() -> [Int] { ["passed", "failed", "errors", "skipped"].map { self.summary[$0] as? Int ?? -1 } }
    }

    @Test func mergedShardsOfARunEqualTheUnshardedRun() async throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let selection = ["--fault", "open-relay", "--tag", "relay", "--tag", "helo", "--format", "json"]
        let whole = try await Tool.run("run", selection)
        #expect(whole.status == 1, "\(whole.stderr)")
        var parts: [String] = []
        for index in 1...3 {
            let part = "\(folder)/part\(index).jsonl"
            let shard = try await Tool.run("run", selection + ["--shard", "\(index)/3", "--output", part])
            #expect(shard.status == 1 || shard.status == 0, "\(shard.stderr)")
            parts.append(part)
        }
        // Each case in exactly one part.
        let sizes = try parts.map { Report(try String(contentsOfFile: $0, encoding: .utf8)).cases.count }
        let unsharded = Report(whole.stdout)
        #expect(sizes.reduce(0, +) == unsharded.cases.count)
        #expect(sizes.allSatisfy { $0 > 0 })
        let merged = try await Tool.run("merge", parts.reversed() + ["--format", "json"])
        #expect(merged.status == 1, "\(merged.stderr)")
        let joined = Report(merged.stdout)
        #expect(joined.verdicts() == unsharded.verdicts())
        #expect(joined.counts() == unsharded.counts())
        #expect(joined.summary["target"] as? String == unsharded.summary["target"] as? String)
        // In the battery's order, whatever order the parts are given in.
        let listed = try await Tool.run("list", "--tag", "relay", "--tag", "helo")
        // The cases' lines come first, up to the first empty line (the rules follow).
        let caseLines = listed.stdout.components(separatedBy: "\n\n").first?.split(separator: "\n").dropFirst() ?? []
        let battery = caseLines.compactMap { $0.split(separator: " ").first.map(String.init) }
        let ids = joined.order.map { String($0.split(separator: " ").last ?? "") }.filter { !$0.hasPrefix("prelude.") }
        #expect(ids == battery.filter { ids.contains($0) })
        // Any format: JUnit from the same parts.
        let junit = try await Tool.run("merge", parts + ["--format", "junit"])
        #expect(junit.stdout.contains("tests=\"\(unsharded.cases.count)\""), "\(junit.stdout.prefix(300))")
    }

    @Test func mergedShardsOfACheckEqualTheUnshardedCheck() async throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let first = folder + "/first.pcap"
        let second = folder + "/second.pcap"
        #expect(try await Tool.run("run", "--tag", "relay", "--record", first).status == 0)
        #expect(try await Tool.run("run", "--tag", "helo", "--fault", "no-helo-checks", "--record", second).status == 1)
        // One file in two parts (sessions dealt), two files in two parts (files dealt).
        for (files, count) in [([first], 2), ([first, second], 2), ([first, second], 3)] {
            let whole = try await Tool.run("check", files + ["--format", "json"])
            var parts: [String] = []
            for index in 1...count {
                let part = "\(folder)/check-\(files.count)-\(index)-of-\(count).jsonl"
                let shard = try await Tool.run("check", files + ["--format", "json", "--shard", "\(index)/\(count)", "--output", part])
                #expect(shard.status != 64 && shard.status != 65, "\(shard.stderr)")
                parts.append(part)
            }
            let merged = try await Tool.run("merge", parts + ["--format", "json"])
            #expect(merged.status == whole.status, "\(merged.stderr)")
            let joined = Report(merged.stdout)
            let unsharded = Report(whole.stdout)
            #expect(joined.verdicts() == unsharded.verdicts(), "\(files.count) files in \(count) parts")
            // Files in the order given, each file's sessions by number (the
            // unsharded check writes them as they end).
            #expect(Set(joined.order) == Set(unsharded.order))
            func place(_ key: String) -> [Int] {
                let parts = key.split(separator: " ")
                return [files.firstIndex(of: String(parts[0])) ?? -1, Int(parts.last?.dropFirst("session-".count) ?? "") ?? -1]
            }
            #expect(joined.order.map(place) == joined.order.map(place).sorted { $0.lexicographicallyPrecedes($1) })
            #expect(joined.counts() == unsharded.counts())
        }
    }

    /// A part carries whole cases for merge; never the AUTH secrets.
    @Test func aPartHoldsNoPassword() async throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let part = folder + "/auth.jsonl"
        let password = "shard-secret-\(UInt32.random(in: 100_000...999_999))"
        let run = try await Tool.run(
            "run", ["--tag", "auth", "--format", "json", "--shard", "1/1", "--output", part], environment: ["SMTPCHECK_PASSWORD": password])
        #expect(run.status == 0, "\(run.stderr)")
        let text = try String(contentsOfFile: part, encoding: .utf8)
        #expect(text.contains("\"result\""))
        for secret in [password, Data("\u{0}alice\u{0}\(password)".utf8).base64EncodedString(), Data(password.utf8).base64EncodedString()] {
            #expect(!text.contains(secret))
        }
        let merged = try await Tool.run("merge", part, "--verbose")
        #expect(merged.status == 0)
        #expect(!merged.stdout.contains(password))
    }

    @Test func mergeRefusesAnIncompleteOrMixedSetOfParts() async throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let one = folder + "/1.jsonl"
        let two = folder + "/2.jsonl"
        #expect(try await Tool.run("run", "--tag", "sequence", "--format", "json", "--shard", "1/2", "--output", one).status == 0)
        #expect(try await Tool.run("run", "--tag", "sequence", "--format", "json", "--shard", "2/2", "--output", two).status == 0)
        let missing = try await Tool.run("merge", one)
        #expect(missing.status == 65)
        #expect(missing.stderr.contains("part 2/2 missing"), "\(missing.stderr)")
        let doubled = try await Tool.run("merge", one, one, two)
        #expect(doubled.status == 65)
        #expect(doubled.stderr.contains("are both part 1/2"), "\(doubled.stderr)")
        // A part that stopped before its summary line.
        let text = try String(contentsOfFile: two, encoding: .utf8)
        let cut = folder + "/cut.jsonl"
        try text.split(separator: "\n").dropLast().joined(separator: "\n").write(toFile: cut, atomically: true, encoding: .utf8)
        let unfinished = try await Tool.run("merge", one, cut)
        #expect(unfinished.status == 65)
        #expect(unfinished.stderr.contains("\(cut): no summary line"), "\(unfinished.stderr)")
        // A report of an unsharded run is not a part.
        let plain = folder + "/plain.jsonl"
        #expect(try await Tool.run("run", "--tag", "sequence", "--format", "json", "--output", plain).status == 0)
        let notAPart = try await Tool.run("merge", plain)
        #expect(notAPart.status == 65)
        #expect(notAPart.stderr.contains("a case without its whole record"), "\(notAPart.stderr)")
        let garbage = folder + "/garbage.jsonl"
        try "{\"type\": \"case\"\nnot json\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        let bad = try await Tool.run("merge", garbage)
        #expect(bad.status == 65)
        #expect(bad.stderr.contains("\(garbage):1: not a line of smtpcheck's JSON Lines"), "\(bad.stderr)")
        // --shard is checked before anything runs.
        #expect(try await Tool.run("run", "--shard", "3/2", "--format", "json").status == 64)
        #expect(try await Tool.run("run", "--shard", "1/2").status == 64)
    }

    @Test func everyTargetOfATargetsFileIsASuiteOfItsOwn() async throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let good = try await ServeProcess.start([])
        let open = try await ServeProcess.start(["--fault", "open-relay"])
        defer {
            good.stop()
            open.stop()
        }
        let targets = folder + "/mx-hosts.txt"
        try "# the fleet\n127.0.0.1:\(good.port)\n\n127.0.0.1:\(open.port)  # the open one\n".write(
            toFile: targets, atomically: true, encoding: .utf8)
        let run = try await Tool.run("run", "--targets", targets, "--tag", "relay", "--format", "json")
        #expect(run.status == 1, "\(run.stderr)")
        let whole = Report(run.stdout)
        #expect(Set(whole.cases.values.compactMap { $0["suite"] as? String }) == ["127.0.0.1:\(good.port)", "127.0.0.1:\(open.port)"])
        // Two parts of the fleet, merged: the same suites and verdicts.
        var parts: [String] = []
        for index in 1...2 {
            let part = "\(folder)/fleet-\(index).jsonl"
            _ = try await Tool.run(
                "run", "--targets", targets, "--tag", "relay", "--format", "json", "--shard", "\(index)/2", "--output", part)
            parts.append(part)
        }
        let merged = Report(try await Tool.run("merge", parts + ["--format", "json"]).stdout)
        #expect(merged.verdicts() == whole.verdicts())
        #expect(merged.counts() == whole.counts())
        // A suite a target: JUnit testsuites, console headings.
        let junit = try await Tool.run("merge", parts + ["--format", "junit"])
        #expect(junit.status == 1, "\(junit.stderr)")
        let headers = junit.stdout.split(separator: "\n").filter { $0.contains("<testsuite name=") }
        #expect(headers.count == 2, "\(headers)")
        #expect(headers.contains { $0.contains("against 127.0.0.1:\(good.port)\"") && $0.contains("failures=\"0\"") }, "\(headers)")
        #expect(headers.contains { $0.contains("against 127.0.0.1:\(open.port)\"") && !$0.contains("failures=\"0\"") }, "\(headers)")
        let console = try await Tool.run("merge", parts + ["--quiet"])
        #expect(console.stdout.contains("== 127.0.0.1:\(open.port)"), "\(console.stdout.prefix(400))")
        // A bad line names the file and the line.
        try "127.0.0.1:\(good.port)\nnot a host:99999\n".write(toFile: targets, atomically: true, encoding: .utf8)
        let bad = try await Tool.run("run", "--targets", targets)
        #expect(bad.status == 65)
        #expect(bad.stderr.contains("\(targets):2: 'not a host:99999' is not HOST[:PORT]"), "\(bad.stderr)")
        #expect(try await Tool.run("run", "--targets", targets, "--target", "127.0.0.1:25").status == 64)
    }
}

/// `smtpcheck serve` on an ephemeral loopback port, stopped by its own PID.
struct ServeProcess {
    let process: Process
    let port: Int

    static func start(_ arguments: [String]) async throws -> ServeProcess {
        let (process, out, _) = Tool.process(["serve", "--listen", "127.0.0.1:0", "--log-format", "none"] + arguments)
        try process.run()
        let banner = try await Tool.serveBanner(out)
        guard let digits = banner.split(separator: "listening on 127.0.0.1:").last?.prefix(while: { $0.isNumber }), let port = Int(digits)
        else {
            process.terminate()
            process.waitUntilExit()
            throw ServeFailed(banner: banner)
        }
        return ServeProcess(process: process, port: port)
    }

    func stop() {
        if self.process.isRunning { self.process.terminate() }
        self.process.waitUntilExit()
    }

    struct ServeFailed: Error { var banner: String }
}
