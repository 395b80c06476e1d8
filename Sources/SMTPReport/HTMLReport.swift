import Foundation
import SMTPPolicy
import SMTPProtocol
import SMTPScenarios

/// One HTML file that opens without a network: styles and script inline, no
/// font or image fetched (a Content-Security-Policy forbids it). At the top
/// the run (target, policy, profile, version, time), the counts and a grid
/// of families by identities; then each case with its rule, RFCs, what was
/// allowed and what came, and its session drawn as a ladder diagram in
/// inline SVG. Filters (verdict, family, identity, text) work in the page.
///
/// Written as the cases come, keeping only counts: the summary goes last in
/// the file and is shown first by the stylesheet (flex `order`), and failures
/// come first in each suite the same way.
public struct HTMLStream: ReportStream {
    let wording: Wording
    private var heading = RunHeading(target: "", policy: "", profile: .documented)
    private var suite: String?
    private var suiteOpen = false
    /// Worst verdict and count per family and identity column, for the grid.
    private var grid: [String: [String: (worst: Int, count: Int)]] = [:]
    private var families: [String] = []
    private var number = 0

    public init(wording: Wording = Wording()) { self.wording = wording }

    public static func render(_ run: RunResult, wording: Wording = Wording()) -> String {
        var stream = HTMLStream(wording: wording)
        return stream.renderAll(run)
    }

    /// The grid's columns: who the client is.
    static let identityColumns = ["external", "trusted", "authenticated", "xclient", "proxy"]

    static func column(_ identity: Scenario.Identity) -> String {
        switch identity {
        case .external: "external"
        case .trusted: "trusted"
        case .authenticated: "authenticated"
        case .xclient, .xclientTrusted: "xclient"
        case .proxyV1, .proxyV1Trusted, .proxyV2, .proxyV2Trusted: "proxy"
        }
    }

    /// Worse is larger: a cell shows its worst case.
    static func severity(_ verdict: Verdict) -> Int {
        switch verdict {
        case .passed: 0
        case .skipped: 1
        case .error: 2
        case .failed: 3
        }
    }

    static let verdictNames = ["pass", "skip", "error", "fail"]

    public mutating func begin(_ heading: RunHeading, to sink: inout some ReportSink) {
        self.heading = heading
        var facts = [
            ("target", heading.target), ("policy", heading.policy), ("profile", heading.profile.rawValue),
        ]
        if let version = heading.toolVersion { facts.append(("smtpcheck", version)) }
        if let started = heading.started { facts.append(("started", TimeText.iso8601(sinceEpoch: started.timeIntervalSince1970))) }
        if let host = heading.hostname { facts.append(("host", host)) }
        var out = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
            <title>smtpcheck: \(Self.escape(heading.target))</title>
            <style>\(Self.style)</style>
            </head><body><main id="report">
            <header id="heading"><h1>smtpcheck</h1><dl>
            """
        for (name, value) in facts { out += "<dt>\(name)</dt><dd>\(Self.escape(value))</dd>" }
        out += "</dl></header>\n"
        out += """
            <nav id="filters" aria-label="filters">
            <fieldset><legend>verdict</legend>
            <label><input type="checkbox" name="verdict" value="fail" checked> failed</label>
            <label><input type="checkbox" name="verdict" value="error" checked> error</label>
            <label><input type="checkbox" name="verdict" value="skip" checked> skipped</label>
            <label><input type="checkbox" name="verdict" value="pass" checked> passed</label>
            </fieldset>
            <label>family <select id="family"><option value="">all</option></select></label>
            <label>identity <select id="identity"><option value="">all</option></select></label>
            <label>search <input type="search" id="search" placeholder="id, rule, text"></label>
            <output id="shown"></output>
            </nav>
            <div id="cases">

            """
        sink.write(out)
    }

    public mutating func add(_ result: CaseResult, to sink: inout some ReportSink) {
        self.add(result, rendered: Self.article(result, wording: self.wording), to: &sink)
    }

    public var caseRenderer: (@Sendable (CaseResult) -> String)? {
        let wording = self.wording
        return { Self.article($0, wording: wording) }
    }

    public mutating func add(_ result: CaseResult, rendered: String, to sink: inout some ReportSink) {
        var out = ""
        if self.heading.groupedByFile, result.suiteName != self.suite || !self.suiteOpen {
            if self.suiteOpen { out += "</section>\n" }
            self.suite = result.suiteName
            self.suiteOpen = true
            out += "<section class=\"suite\"><h2>\(Self.escape(result.suiteName))</h2>\n"
        }
        sink.write(out + rendered)
        let family = result.scenario.tags.first ?? "other"
        if self.grid[family] == nil { self.families.append(family) }
        let column = Self.column(result.scenario.identity)
        let cell = self.grid[family]?[column] ?? (worst: 0, count: 0)
        self.grid[family, default: [:]][column] = (max(cell.worst, Self.severity(result.verdict)), cell.count + 1)
        self.number += 1
    }

    public mutating func end(_ tally: RunTally, duration: Double, to sink: inout some ReportSink) {
        var out = self.suiteOpen ? "</section>\n" : ""
        out += "</div>\n<section id=\"summary\"><h2>Summary</h2><ul class=\"counts\">"
        for (label, name, count) in [
            ("FAIL", "failed", tally.count("FAIL")), ("ERROR", "errors", tally.count("ERROR")),
            ("SKIP", "skipped", tally.count("SKIP")), ("PASS", "passed", tally.count("PASS")),
        ] {
            out += "<li class=\"v-\(Self.verdictClass(label))\"><a href=\"#verdict=\(Self.verdictClass(label))\">"
            out += "<b data-count=\"\(Self.verdictClass(label))\">\(count)</b> \(name)</a></li>"
        }
        out += "</ul><p>\(tally.total) cases in \(String(format: "%.2f", duration)) s"
        if tally.relay.attempts > 0 { out += "; \(tally.relay.refused) of \(tally.relay.attempts) relay attempts refused" }
        out += "</p>\n<table class=\"grid\"><thead><tr><th>family</th>"
        for column in Self.identityColumns { out += "<th>\(column)</th>" }
        out += "</tr></thead><tbody>"
        for family in self.families {
            out += "<tr><th>\(Self.escape(family))</th>"
            for column in Self.identityColumns {
                if let cell = self.grid[family]?[column] {
                    let verdict = Self.verdictNames[cell.worst]
                    out += "<td class=\"v-\(verdict)\"><a href=\"#family=\(Self.escape(family))&amp;identity=\(column)\" "
                    out += "title=\"\(cell.count) cases, worst: \(verdict)\">\(cell.count)</a></td>"
                } else {
                    out += "<td class=\"none\"></td>"
                }
            }
            out += "</tr>"
        }
        out += "</tbody></table></section>\n</main>\n<script>\(Self.script)</script>\n</body></html>\n"
        sink.write(out)
    }

    static func verdictClass(_ label: String) -> String {
        switch label {
        case "FAIL": "fail"
        case "ERROR": "error"
        case "SKIP": "skip"
        default: "pass"
        }
    }

    // MARK: - A case

    static func article(_ result: CaseResult, wording: Wording) -> String {
        let verdict = Self.verdictNames[Self.severity(result.verdict)]
        let scenario = result.scenario
        let family = scenario.tags.first ?? "other"
        let id = result.qualifiedID
        var rules = Set<String>()
        var out = ""
        var details = ""
        switch result.verdict {
        case .passed:
            break
        case .failed(let failures):
            details += "<dl class=\"failures\">"
            for failure in failures {
                if let rule = failure.rule { rules.insert(rule.rawValue) }
                let step = failure.step.map { "step \($0 + 1)" } ?? "session"
                details += "<dt>\(failure.rule.map { "<code>\(Self.escape($0.rawValue))</code>, " } ?? "")\(step)</dt>"
                details += "<dd><span class=\"allowed\">allowed: \(Self.escape(wording.expected(failure)))</span>"
                details += "<span class=\"came\">came: \(Self.escape(wording.observed(failure.got)))</span></dd>"
            }
            details += "</dl>"
        case .error(let reason):
            details += "<p class=\"reason\">could not run: \(Self.escape(wording.error(reason, transcript: result.transcript)))</p>"
        case .skipped(let reason):
            details += "<p class=\"reason\">skipped: \(Self.escape(wording.skip(reason)))</p>"
        }
        if rules.isEmpty { rules = Set(scenario.rulesNamed.map(\.rawValue)) }
        out += "<article class=\"case v-\(verdict)\" id=\"case-\(Self.anchor(id))\" data-verdict=\"\(verdict)\" "
        out += "data-family=\"\(Self.escape(family))\" data-identity=\"\(Self.column(scenario.identity))\">\n"
        out +=
            "<h3><span class=\"badge\">\(verdict.uppercased())</span> <code>\(Self.escape(id))</code> \(Self.escape(scenario.title))</h3>\n"
        var facts: [String] = []
        if !rules.isEmpty { facts.append("rule " + rules.sorted().map { "<code>\(Self.escape($0))</code>" }.joined(separator: ", ")) }
        if !scenario.refs.isEmpty { facts.append(Self.escape(scenario.refs.joined(separator: "; "))) }
        facts.append("identity \(Self.escape(scenario.identity.rawValue))")
        facts.append("\(Self.escape(scenario.file))\(scenario.line > 0 ? ":\(scenario.line)" : "")")
        out += "<p class=\"facts\">\(facts.joined(separator: " · "))</p>\n" + details
        if let transcript = result.transcript {
            out += "<div class=\"diagram\">" + Ladder(transcript: transcript, result: result, wording: wording).svg() + "</div>\n"
            let text = TranscriptText(wording: wording).lines(transcript).map { TranscriptText.shorten($0, to: 400) }
            out += "<details><summary>transcript</summary><pre>\(Self.escape(text.joined(separator: "\n")))</pre></details>\n"
        }
        return out + "</article>\n"
    }

    static func anchor(_ id: String) -> String {
        String(id.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" })
    }

    /// Text in HTML or SVG: escaped as in JUnit's XML (markup, and the
    /// characters XML forbids shown as `\xNN`), which HTML reads the same.
    static func escape(_ text: String) -> String { JUnitReporter.escape(text) }
}

/// A session as a ladder diagram: the client's and the server's columns,
/// each command and reply an arrow with its text; refusals coloured, the
/// step that broke the policy marked, TLS and PROXY/XCLIENT shown where
/// they happen, a pipelined group drawn as one burst, and for a replay the
/// captured reply beside the new one where they differ.
struct Ladder {
    let transcript: Transcript
    let result: CaseResult
    let wording: Wording

    static let width = 720.0
    static let client = 70.0
    static let server = 650.0
    static let row = 22.0
    /// Rows drawn at most; the transcript below holds the rest.
    static let maximumRows = 300
    static let labelLength = 72

    /// The exchanges (by step) where the policy was broken, and what was allowed there.
    var broken: [Int: [Failure]] {
        guard case .failed(let failures) = self.result.verdict else { return [:] }
        return Dictionary(grouping: failures.filter { $0.step != nil }) { $0.step ?? -1 }
    }

    func svg() -> String {
        var rows: [String] = []
        var y = 36.0
        let broken = self.broken
        var markedSteps = Set<Int>()
        var tlsShown = false
        var lastGroup: Int?
        let exchanges = self.transcript.exchanges
        if let tls = self.transcript.tls, tls.mode == .implicit {
            rows.append(self.band(y, "TLS from the first octet\(tls.version.map { ": \($0)" } ?? "")", kind: "tls"))
            y += Self.row
            tlsShown = true
        }
        var drawn = 0
        for exchange in exchanges {
            guard drawn < Self.maximumRows else { break }
            drawn += 1
            if exchange.encrypted && !tlsShown, let tls = self.transcript.tls {
                rows.append(self.band(y, "TLS (\(tls.mode.rawValue)) up\(tls.version.map { ": \($0)" } ?? "")", kind: "tls"))
                y += Self.row
                tlsShown = true
            }
            let failures = exchange.step.flatMap { broken[$0] } ?? []
            let marked = !failures.isEmpty && exchange.step.map { !markedSteps.contains($0) } == true
            if marked, let step = exchange.step { markedSteps.insert(step) }
            let top = y
            if let sent = exchange.sent {
                let text = self.wording.unit(sent)
                let upper = text.uppercased()
                let kind = upper.hasPrefix("PROXY ") ? "proxy" : upper.hasPrefix("XCLIENT") ? "xclient" : "cmd"
                let burst = exchange.pipelineGroup != nil && exchange.pipelineGroup == lastGroup
                let label = (exchange.step.map { "[\($0 + 1)] " } ?? "") + text
                let note = exchange.pipelineGroup != nil && !burst ? " (pipelined)" : ""
                rows.append(self.arrow(y, toServer: true, label + note, full: label, kind: burst ? "\(kind) burst" : kind))
                y += Self.row
            }
            lastGroup = exchange.pipelineGroup
            switch exchange.response {
            case .reply(let reply):
                let first = reply.description.split(separator: "\n").first.map(String.init) ?? ""
                let more = reply.lines.count > 1 ? " (+\(reply.lines.count - 1) lines)" : ""
                let kind = reply.code.value >= 500 ? "r5" : reply.code.value >= 400 ? "r4" : "r2"
                rows.append(self.arrow(y, toServer: false, first + more, full: reply.description, kind: kind))
                y += Self.row
            case .malformed(let malformed):
                rows.append(self.arrow(y, toServer: false, malformed.description, full: malformed.description, kind: "r5"))
                y += Self.row
            case nil:
                if exchange.sent != nil {
                    rows.append(self.note(y, "no reply"))
                    y += Self.row
                }
            }
            if marked {
                for failure in failures {
                    if case .asCaptured(let captured) = failure.expected {
                        let text = "captured: " + (captured?.singleLine ?? "no reply")
                        rows.append(self.arrow(y, toServer: false, text, full: text, kind: "captured"))
                        y += Self.row
                    }
                }
                let rules = failures.compactMap(\.rule).map(\.rawValue)
                let title = failures.map { "allowed: \(self.wording.expected($0)); came: \(self.wording.observed($0.got))" }
                rows.insert(self.mark(top, height: y - top, rules.isEmpty ? "differs" : rules.joined(separator: ", "), title: title), at: 0)
            }
            for note in exchange.notes {
                rows.append(self.note(y, self.wording.note(note)))
                y += Self.row
            }
        }
        if exchanges.count > drawn {
            rows.append(self.note(y, "… \(exchanges.count - drawn) more exchanges: see the transcript"))
            y += Self.row
        }
        for note in self.transcript.notes {
            rows.append(self.note(y, self.wording.note(note)))
            y += Self.row
        }
        if let end = self.transcript.end {
            rows.append(self.note(y, self.wording.end(end, awaiting: self.wording.awaited(self.transcript))))
            y += Self.row
        }
        let height = y + 8
        let client = HTMLStream.escape(self.transcript.client ?? "client")
        let server = HTMLStream.escape(self.transcript.server ?? "server")
        var out = "<svg class=\"ladder\" role=\"img\" viewBox=\"0 0 \(Int(Self.width)) \(Int(height))\" "
        out += "aria-label=\"session diagram\" xmlns=\"http://www.w3.org/2000/svg\">\n"
        out += "<text class=\"who\" x=\"4\" y=\"16\">client \(client)</text>"
        out += "<text class=\"who\" x=\"\(Int(Self.width - 4))\" y=\"16\" text-anchor=\"end\">server \(server)</text>"
        out += "<line class=\"life\" x1=\"\(Int(Self.client))\" y1=\"22\" x2=\"\(Int(Self.client))\" y2=\"\(Int(height))\"/>"
        out += "<line class=\"life\" x1=\"\(Int(Self.server))\" y1=\"22\" x2=\"\(Int(Self.server))\" y2=\"\(Int(height))\"/>\n"
        return out + rows.joined(separator: "\n") + "\n</svg>\n"
    }

    private func arrow(_ y: Double, toServer: Bool, _ text: String, full: String, kind: String) -> String {
        let (from, to) = toServer ? (Self.client, Self.server) : (Self.server, Self.client)
        let head = toServer ? to - 8 : to + 8
        let label = HTMLStream.escape(TranscriptText.shorten(text, to: Self.labelLength))
        let x = toServer ? Self.client + 8 : Self.server - 8
        let anchor = toServer ? "start" : "end"
        return "<g class=\"ex \(kind)\"><title>\(HTMLStream.escape(TranscriptText.shorten(full, to: 2000)))</title>"
            + "<line x1=\"\(Int(from))\" y1=\"\(Int(y + 8))\" x2=\"\(Int(to))\" y2=\"\(Int(y + 8))\"/>"
            + "<path d=\"M\(Int(to)) \(Int(y + 8)) L\(Int(head)) \(Int(y + 4)) L\(Int(head)) \(Int(y + 12)) Z\"/>"
            + "<text x=\"\(Int(x))\" y=\"\(Int(y + 4))\" text-anchor=\"\(anchor)\">\(label)</text></g>"
    }

    private func band(_ y: Double, _ text: String, kind: String) -> String {
        "<g class=\"band \(kind)\"><rect x=\"\(Int(Self.client))\" y=\"\(Int(y))\" width=\"\(Int(Self.server - Self.client))\" height=\"16\" rx=\"3\"/>"
            + "<text x=\"\(Int(Self.width / 2))\" y=\"\(Int(y + 12))\" text-anchor=\"middle\">\(HTMLStream.escape(text))</text></g>"
    }

    private func note(_ y: Double, _ text: String) -> String {
        "<text class=\"note\" x=\"\(Int(Self.width / 2))\" y=\"\(Int(y + 12))\" text-anchor=\"middle\">"
            + "<title>\(HTMLStream.escape(text))</title>\(HTMLStream.escape(TranscriptText.shorten(text, to: 90)))</text>"
    }

    private func mark(_ y: Double, height: Double, _ text: String, title: [String]) -> String {
        "<g class=\"broken\"><title>\(HTMLStream.escape(title.joined(separator: "\n")))</title>"
            + "<rect x=\"2\" y=\"\(Int(y - 2))\" width=\"\(Int(Self.width - 4))\" height=\"\(Int(height))\" rx=\"4\"/>"
            + "<text x=\"6\" y=\"\(Int(y + 10))\">✗</text>"
            + "<text class=\"rule\" x=\"\(Int(Self.width - 6))\" y=\"\(Int(y + height - 6))\" text-anchor=\"end\">\(HTMLStream.escape(text))</text></g>"
    }
}

extension HTMLStream {
    static let style = """
        :root{--fail:#c62828;--error:#8e24aa;--skip:#9e9e9e;--pass:#2e7d32;--bg:#fafafa;--fg:#1a1a1a;--line:#ddd}
        *{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg)}
        main{display:flex;flex-direction:column;max-width:1100px;margin:0 auto;padding:12px}
        #heading{order:0}#summary{order:1}#filters{order:2}#cases{order:3;display:flex;flex-direction:column}
        h1{margin:.2em 0;font-size:1.5em}dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}dt{color:#555}dd{margin:0;word-break:break-all}
        .counts{display:flex;flex-wrap:wrap;gap:8px;list-style:none;padding:0;margin:8px 0}
        .counts li a{display:block;padding:6px 12px;border-radius:6px;color:#fff;text-decoration:none}
        .counts .v-fail a{background:var(--fail)}.counts .v-error a{background:var(--error)}.counts .v-skip a{background:var(--skip)}.counts .v-pass a{background:var(--pass)}
        .grid{border-collapse:collapse;margin:8px 0;font-size:.9em;display:block;overflow-x:auto}
        .grid th,.grid td{border:1px solid var(--line);padding:4px 8px;text-align:center}.grid tbody th{text-align:left}
        .grid td a{display:block;color:#fff;text-decoration:none;font-weight:600}
        .grid td.v-fail{background:var(--fail)}.grid td.v-error{background:var(--error)}.grid td.v-skip{background:var(--skip)}.grid td.v-pass{background:var(--pass)}
        #filters{display:flex;flex-wrap:wrap;gap:10px;align-items:center;position:sticky;top:0;background:var(--bg);padding:8px 0;border-bottom:1px solid var(--line);z-index:1}
        fieldset{border:1px solid var(--line);border-radius:6px;padding:2px 8px;margin:0}
        .suite{display:flex;flex-direction:column}.suite h2{order:-1;font-size:1.1em;margin:16px 0 4px;word-break:break-all}
        .case{background:#fff;border:1px solid var(--line);border-left:6px solid var(--pass);border-radius:6px;margin:6px 0;padding:8px 12px;order:3}
        .case.v-fail{border-left-color:var(--fail);order:0}.case.v-error{border-left-color:var(--error);order:1}.case.v-skip{border-left-color:var(--skip);order:2}
        .case h3{margin:0;font-size:1em;font-weight:600}.case h3 code{word-break:break-all}
        .badge{display:inline-block;min-width:3.6em;text-align:center;border-radius:4px;color:#fff;font-size:.75em;padding:1px 4px;background:var(--pass)}
        .v-fail .badge{background:var(--fail)}.v-error .badge{background:var(--error)}.v-skip .badge{background:var(--skip)}
        .facts{margin:2px 0;color:#555;font-size:.85em}.reason{margin:4px 0}
        .failures dd{margin:0 0 6px 0;display:flex;flex-direction:column}.allowed{color:var(--pass)}.came{color:var(--fail)}
        svg.ladder{width:100%;height:auto;max-width:720px;display:block;margin:6px 0;font:11px ui-monospace,Menlo,Consolas,monospace}
        .ladder .who{font-weight:600;fill:#333}.ladder .life{stroke:#999;stroke-width:1.5}
        .ladder .ex line{stroke:#555;stroke-width:1.2}.ladder .ex path{fill:#555}.ladder .ex text{fill:#222}
        .ladder .r2 line{stroke:var(--pass)}.ladder .r2 path{fill:var(--pass)}
        .ladder .r4 line{stroke:#ef6c00}.ladder .r4 path{fill:#ef6c00}.ladder .r4 text{fill:#bf360c}
        .ladder .r5 line{stroke:var(--fail)}.ladder .r5 path{fill:var(--fail)}.ladder .r5 text{fill:var(--fail)}
        .ladder .burst line{stroke-dasharray:4 2}.ladder .proxy text,.ladder .xclient text{fill:#1565c0;font-weight:600}
        .ladder .captured line{stroke:#777;stroke-dasharray:2 3}.ladder .captured text{fill:#777;font-style:italic}
        .ladder .band rect{fill:#e3f2fd;stroke:#90caf9}.ladder .band text{fill:#0d47a1}
        .ladder .note{fill:#666;font-style:italic}
        .ladder .broken rect{fill:#ffebee;stroke:var(--fail);stroke-width:1.5}.ladder .broken text{fill:var(--fail);font-weight:700}
        details pre{white-space:pre-wrap;word-break:break-all;font-size:.8em;background:#f4f4f4;padding:6px;border-radius:4px;max-height:30em;overflow:auto}
        [hidden]{display:none!important}
        .diagram{overflow-x:auto}
        @media (max-width:600px){body{font-size:14px}main{padding:6px}#filters{position:static}.case{padding:6px}svg.ladder{min-width:560px}dl{grid-template-columns:1fr}}
        """

    static let script = """
        (function(){
        var cases=[].slice.call(document.querySelectorAll('article.case'));
        var fam=document.getElementById('family'),ide=document.getElementById('identity'),q=document.getElementById('search');
        var boxes=[].slice.call(document.querySelectorAll('input[name=verdict]')),shown=document.getElementById('shown');
        function fill(sel,attr){var seen={};cases.forEach(function(c){var v=c.getAttribute(attr);if(!seen[v]){seen[v]=1;var o=document.createElement('option');o.value=v;o.textContent=v;sel.appendChild(o);}});}
        fill(fam,'data-family');fill(ide,'data-identity');
        function apply(){
        var want={};boxes.forEach(function(b){if(b.checked)want[b.value]=1;});
        var f=fam.value,i=ide.value,t=q.value.toLowerCase(),n=0;
        cases.forEach(function(c){var ok=want[c.dataset.verdict]&&(!f||c.dataset.family===f)&&(!i||c.dataset.identity===i)&&(!t||c.textContent.toLowerCase().indexOf(t)>=0);c.hidden=!ok;if(ok)n++;});
        shown.textContent=n+' of '+cases.length+' cases shown';shown.setAttribute('data-shown',n);
        }
        function fromHash(){
        var p={};location.hash.replace(/^#/,'').split('&').forEach(function(kv){var a=kv.split('=');if(a[0])p[decodeURIComponent(a[0])]=decodeURIComponent(a[1]||'');});
        if(p.verdict!==undefined){var v=p.verdict.split(',');boxes.forEach(function(b){b.checked=v.indexOf(b.value)>=0;});}
        if(p.family!==undefined)fam.value=p.family;if(p.identity!==undefined)ide.value=p.identity;if(p.q!==undefined)q.value=p.q;
        apply();
        }
        boxes.forEach(function(b){b.addEventListener('change',apply);});
        [fam,ide].forEach(function(s){s.addEventListener('change',apply);});q.addEventListener('input',apply);
        window.addEventListener('hashchange',fromHash);fromHash();
        })();
        """
}
