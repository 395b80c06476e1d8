import Foundation
import SMTPTestSupport
import Testing

/// Issue 14: the HTML report in a real browser (headless Chromium). Runs
/// under `make test-browser`, which installs Chromium where it is missing
/// and sets SMTPCHECK_BROWSER; `make test` leaves it out.
@Suite(.serialized, .enabled(if: Browser.path != nil))
struct BrowserReportTests {
    static let shots = Repository.root + "/.build/browser-screenshots"

    static func folder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-html-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: Self.shots, withIntermediateDirectories: true)
        return path
    }

    /// A report's counts as the JSON summary gives them.
    static func counts(_ json: String) -> [String: Int] {
        for line in json.split(separator: "\n") {
            guard let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                record["type"] as? String == "summary"
            else { continue }
            return [
                "fail": record["failed"] as? Int ?? -1, "error": record["errors"] as? Int ?? -1,
                "skip": record["skipped"] as? Int ?? -1, "pass": record["passed"] as? Int ?? -1,
            ]
        }
        return [:]
    }

    @Test func aFailingRunReadsInTheBrowser() async throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let page = folder + "/open-relay.html"
        let run = try await Tool.run("run", "--fault", "open-relay", "--format", "html", "--output", page)
        #expect(run.status == 1, "\(run.stderr)")
        let json = try await Tool.run("run", "--fault", "open-relay", "--format", "json")
        let expected = Self.counts(json.stdout)
        #expect(expected["fail", default: 0] > 0)

        let dom = try await Browser.dom(page)
        // The counts, as the page shows them after its script ran.
        for (verdict, count) in expected { #expect(dom.contains("data-count=\"\(verdict)\">\(count)</b>"), "\(verdict) \(count)") }
        let total = expected.values.reduce(0, +)
        #expect(dom.contains("data-shown=\"\(total)\""), "every case shown at first")
        // A failing case's diagram marks the step that broke the policy.
        let external = try #require(Browser.article(dom, id: "relay.external"))
        #expect(external.contains("data-verdict=\"fail\""))
        #expect(external.contains("<svg class=\"ladder\""))
        #expect(external.contains("class=\"broken\"") && external.contains(">relay.denied</text>"))
        #expect(external.contains("RCPT TO:&lt;someone@example.org&gt;"))
        // The grid: relay from an external client is red, and links to its cases.
        #expect(dom.contains("<td class=\"v-fail\"><a href=\"#family=relay&amp;identity=external\""))

        // Filters, from the address as the grid's links set them.
        let failed = try await Browser.dom(page, fragment: "verdict=fail")
        #expect(failed.contains("data-shown=\"\(expected["fail"] ?? -1)\""), "only the failures")
        #expect(Browser.articles(failed).allSatisfy { $0.contains("data-verdict=\"fail\"") == !Browser.hidden($0) })
        let relay = try await Browser.dom(page, fragment: "family=relay&identity=external")
        let shown = Browser.articles(relay).filter { !Browser.hidden($0) }
        #expect(!shown.isEmpty && shown.allSatisfy { $0.contains("data-family=\"relay\"") && $0.contains("data-identity=\"external\"") })
        let search = try await Browser.dom(page, fragment: "q=relay.trick.percent-literal")
        let found = Browser.articles(search).filter { !Browser.hidden($0) }
        #expect(found.count == 1 && found.allSatisfy { $0.contains("relay.trick.percent-literal") }, "\(found.count)")
        let none = try await Browser.dom(page, fragment: "verdict=")
        #expect(none.contains("data-shown=\"0\""))

        // Nothing leaves the page. The check sees a page that does ask
        // (an image and a fetch), so an empty list means something.
        #expect(try await Browser.requests(page) == [])
        let asking = folder + "/asking.html"
        try "<img src=\"http://example.invalid/x.png\"><script>fetch('https://example.invalid/y')</script>".write(
            toFile: asking, atomically: true, encoding: .utf8)
        #expect(try await Browser.requests(asking).sorted() == ["http://example.invalid/x.png", "https://example.invalid/y"])
        let html = try String(contentsOfFile: page, encoding: .utf8)
        #expect(!html.contains("src=\"http") && !html.contains("href=\"http") && !html.contains("url(http"))

        try await Browser.screenshot(page, to: Self.shots + "/open-relay.png", width: 1280, height: 1800)
        try await Browser.screenshot(page, to: Self.shots + "/open-relay-phone.png", width: 390, height: 1600)
        #expect(FileManager.default.fileExists(atPath: Self.shots + "/open-relay.png"))
    }

    @Test func aPassingRunACheckAndAReplayRender() async throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // A passing run: no failure, no marked step.
        let passing = folder + "/pass.html"
        #expect(try await Tool.run("run", "--tag", "relay", "--format", "html", "--output", passing).status == 0)
        let passed = try await Browser.dom(passing)
        #expect(passed.contains("data-count=\"fail\">0</b>"))
        #expect(!passed.contains("class=\"broken\""))
        try await Browser.screenshot(passing, to: Self.shots + "/pass.png", width: 1280, height: 1200)

        // A check of the repository's captures: a section per file, each session a case.
        let captures = ["auth-wrong-password.pcap", "relay-auth-login.pcap", "bdat-chunks.pcap"].map {
            Repository.root + "/fixtures/fuzz/capture/" + $0
        }
        let checked = folder + "/check.html"
        let check = try await Tool.run("check", captures + ["--format", "html", "--output", checked])
        #expect(check.status == 0 || check.status == 1, "\(check.stderr)")
        let dom = try await Browser.dom(checked)
        #expect(dom.components(separatedBy: "<section class=\"suite\">").count - 1 == captures.count)
        for capture in captures { #expect(dom.contains("<h2>\(capture)</h2>"), "\(capture)") }
        #expect(dom.contains("<svg class=\"ladder\""))
        #expect(!dom.contains("AGFsaWNl"), "an AUTH secret in the page")
        try await Browser.screenshot(checked, to: Self.shots + "/check.png", width: 1280, height: 1400)

        // A replay against a server that changed: the captured reply beside the new one.
        let capture = folder + "/relay.pcap"
        #expect(try await Tool.run("run", "--tag", "relay", "--record", capture).status == 0)
        let open = try await ServeProcess.start(["--fault", "open-relay"])
        defer { open.stop() }
        let replayed = folder + "/replay.html"
        let replay = try await Tool.run(
            "replay", capture, "--target", "127.0.0.1:\(open.port)", "--format", "html", "--output", replayed)
        #expect(replay.status == 1, "\(replay.stderr)")
        let differences = try await Browser.dom(replayed)
        let changed = Browser.articles(differences).filter { $0.contains("data-verdict=\"fail\"") }
        #expect(!changed.isEmpty)
        #expect(changed.allSatisfy { $0.contains("class=\"ex captured\"") && $0.contains(">differs</text>") })
        #expect(changed.contains { $0.contains("captured: 554 5.7.1 &lt;someone@example.org&gt;: Relay access denied") })
        try await Browser.screenshot(replayed, to: Self.shots + "/replay.png", width: 1280, height: 1400)
    }
}

/// Headless Chromium, run by path with a profile of its own, no network
/// services of its own, and as root without its sandbox.
enum Browser {
    static let path: String? = {
        guard ProcessInfo.processInfo.environment["SMTPCHECK_BROWSER"] != nil else { return nil }
        return ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }()

    struct Failed: Error, CustomStringConvertible { var description: String }

    /// Runs the browser to its end, waited for off the cooperative pool.
    static func run(_ arguments: [String]) async throws -> String {
        try await offThePool { try Self.runBlocking(arguments) }
    }

    static func runBlocking(_ arguments: [String]) throws -> String {
        guard let path = self.path else { throw Failed(description: "no browser") }
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-chromium-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: profile) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments =
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps", "--user-data-dir=\(profile)",
                // No name resolves: whatever the browser or a page asks for stays on this machine.
                "--host-resolver-rules=MAP * ~NOTFOUND",
            ] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw Failed(description: "chromium exited \(process.terminationStatus)") }
        return String(decoding: data, as: UTF8.self)
    }

    static func url(_ file: String, fragment: String? = nil) -> String {
        "file://" + file + (fragment.map { "#" + $0 } ?? "")
    }

    /// The DOM after the page's script ran.
    static func dom(_ file: String, fragment: String? = nil) async throws -> String {
        try await self.run(["--dump-dom", self.url(file, fragment: fragment)])
    }

    static func screenshot(_ file: String, to png: String, width: Int, height: Int) async throws {
        _ = try await self.run(["--screenshot=\(png)", "--window-size=\(width),\(height)", "--hide-scrollbars", self.url(file)])
    }

    /// The URLs the page asked for while it loaded, from the browser's
    /// network log: requests started for a `file://` site. (The browser's
    /// own background requests have no site; no name resolves, so none of
    /// them leaves the machine.)
    static func requests(_ file: String) async throws -> [String] {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("smtpcheck-netlog-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        _ = try await self.run(["--log-net-log=\(log)", "--net-log-capture-mode=Everything", "--dump-dom", self.url(file)])
        let data = try Data(contentsOf: URL(fileURLWithPath: log))
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            let constants = root["constants"] as? [String: Any], let types = constants["logEventTypes"] as? [String: Int],
            let start = types["URL_REQUEST_START_JOB"], let events = root["events"] as? [[String: Any]]
        else { throw Failed(description: "an unreadable network log") }
        return events.compactMap { event in
            guard event["type"] as? Int == start, let params = event["params"] as? [String: Any],
                (params["site_for_cookies"] as? String)?.contains("site=file://") == true
            else { return nil }
            return params["url"] as? String
        }
    }

    static func articles(_ dom: String) -> [String] {
        dom.components(separatedBy: "<article ").dropFirst().map { "<article " + ($0.components(separatedBy: "</article>").first ?? "") }
    }

    /// Whether the page's filters hid an article (its opening tag has `hidden`).
    static func hidden(_ article: String) -> Bool {
        article.prefix { $0 != ">" }.contains(" hidden")
    }

    static func article(_ dom: String, id: String) -> String? {
        self.articles(dom).first { $0.contains("id=\"case-\(id)\"") }
    }
}
