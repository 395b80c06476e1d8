import ArgumentParser
import Foundation
import SMTPPolicy
import SMTPScenarios

extension SMTPCheck {
    struct Explain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Explain a rule: its reply, when it applies, the RFCs, what a failure usually means and how a site fixes it.")

        @Argument(
            help: "A rule, as reports name it (relay.denied); without one, every rule with when it applies.",
            completion: .list(RuleCatalogue.documented.keys.map(\.rawValue).sorted()))
        var rule: String?

        @OptionGroup var policyOptions: PolicyOptions

        @Flag(name: .long, help: "Every rule as the Markdown reference of docs/policy.md (make docs writes it there).")
        var markdown = false

        func validate() throws {
            if self.markdown && self.rule != nil { throw ValidationError("--markdown writes every rule: give no rule with it") }
            guard let name = self.rule, RuleCatalogue.guides[RuleID(rawValue: name)] == nil else { return }
            let near = RuleCatalogue.guides.keys.map(\.rawValue).filter {
                $0.hasPrefix(String(name.prefix { $0 != "." })) || $0.contains(name)
            }.sorted()
            let hint = near.isEmpty ? "smtpcheck explain lists them" : "did you mean \(near.joined(separator: ", "))?"
            throw ValidationError("no rule named '\(name)': \(hint)")
        }

        func run() async throws {
            let policy = try self.policyOptions.load()
            if self.markdown { return StandardStreams.out(Self.markdown(policy)) }
            guard let name = self.rule else {
                let width = RuleCatalogue.guides.keys.map(\.rawValue.count).max() ?? 20
                let lines = RuleCatalogue.guides.keys.sorted().map { rule in
                    "\(rule.rawValue.padding(toLength: width, withPad: " ", startingAt: 0))  \(RuleCatalogue.guides[rule]?.when ?? "")"
                }
                StandardStreams.out(lines.joined(separator: "\n") + "\n")
                return
            }
            let rule = RuleID(rawValue: name)
            guard let guide = RuleCatalogue.guides[rule] else { throw ValidationError("no rule named '\(name)'") }
            let scenarios = (try? ScenarioLoader.loadBuiltIn().scenarios) ?? []
            let cases = scenarios.filter { $0.rulesNamed.contains(rule) }.map(\.id)
            var out = [rule.rawValue, ""]
            if let reply = policy.rules[rule] {
                let enhanced = reply.enhancedCode.map { " \($0)" } ?? ""
                out.append(
                    "  reply        \(reply.code)\(enhanced) \(reply.text)   (policy \(policy.source), profile \(policy.profile.rawValue))")
            } else {
                out.append("  reply        none: policy \(policy.source) switches this rule off")
            }
            if RuleID.heloNameRules.contains(rule) {
                out.append(
                    "  timing       \(policy.heloTiming.rawValue) (HELO-name refusals may come at HELO or, with Postfix's default, by the first RCPT)"
                )
            }
            out.append("  applies to   \(guide.when)")
            out.append("  references   \(guide.references.joined(separator: "; "))")
            out.append("  a failure    usually means \(guide.failure)")
            out.append("  the fix      \(guide.fix)")
            out.append(
                "  tested by    "
                    + (cases.isEmpty
                        ? "no case of the built-in battery"
                        : "\(cases.count) cases: \(cases.prefix(6).joined(separator: ", "))\(cases.count > 6 ? ", ..." : "")"))
            StandardStreams.out(out.joined(separator: "\n") + "\n")
        }

        /// The rule reference, from the catalogue and the policy: what
        /// docs/policy.md holds between its markers, so that it cannot drift.
        static func markdown(_ policy: Policy) -> String {
            func cell(_ text: String) -> String { text.replacingOccurrences(of: "|", with: "\\|") }
            let rules = RuleCatalogue.guides.keys.sorted()
            var out = [
                Self.beginMarker,
                "",
                "| rule | when | reply (policy \(policy.source)) | RFCs |",
                "|---|---|---|---|",
            ]
            for rule in rules {
                guard let guide = RuleCatalogue.guides[rule] else { continue }
                let reply =
                    policy.rules[rule].map { reply in
                        "`\(reply.code)\(reply.enhancedCode.map { " \($0)" } ?? "") \(cell(reply.text))`"
                    } ?? "(not enforced)"
                out.append("| `\(rule)` | \(cell(guide.when)) | \(reply) | \(guide.references.joined(separator: "; ")) |")
            }
            out += ["", "What a failure of each rule usually means, and how a site fixes it:", ""]
            for rule in rules {
                guard let guide = RuleCatalogue.guides[rule] else { continue }
                out.append("- `\(rule)`: a failure usually means \(guide.failure). Fix: \(guide.fix).")
            }
            out += ["", Self.endMarker]
            return out.joined(separator: "\n") + "\n"
        }

        static let beginMarker = "<!-- The rules: written by `smtpcheck explain --markdown` (make docs), not by hand. -->"
        static let endMarker = "<!-- End of the rules written by smtpcheck explain --markdown. -->"
    }
}
