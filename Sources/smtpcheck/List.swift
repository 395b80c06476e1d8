import ArgumentParser
import Foundation
import SMTPPolicy
import SMTPScenarios

extension SMTPCheck {
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the cases, their tags, and the policy's rules.")

        @OptionGroup var selection: ScenarioSelection
        @OptionGroup var policyOptions: PolicyOptions

        func run() async throws {
            let policy = try self.policyOptions.load()
            let scenarios = try self.selection.load()
            var out: [String] = ["cases (\(scenarios.count)):"]
            let width = scenarios.map(\.id.count).max() ?? 10
            for scenario in scenarios {
                let id = scenario.id.padding(toLength: width, withPad: " ", startingAt: 0)
                out.append(
                    "  \(id)  \(scenario.identity.rawValue.padding(toLength: 13, withPad: " ", startingAt: 0))  \(scenario.title)  [\(scenario.tags.joined(separator: ", "))]"
                )
            }
            var tagCounts: [String: Int] = [:]
            for scenario in scenarios { for tag in scenario.tags { tagCounts[tag, default: 0] += 1 } }
            out.append("")
            out.append("tags: " + tagCounts.keys.sorted().map { "\($0) (\(tagCounts[$0] ?? 0))" }.joined(separator: ", "))
            out.append("")
            out.append("rules of \(policy.source) (profile \(policy.profile.rawValue), HELO refusals \(policy.heloTiming.rawValue)):")
            let ruleWidth = RuleCatalogue.documented.keys.map(\.rawValue.count).max() ?? 20
            for rule in RuleCatalogue.documented.keys.sorted() {
                let name = rule.rawValue.padding(toLength: ruleWidth, withPad: " ", startingAt: 0)
                guard let reply = policy.rules[rule] else {
                    out.append("  \(name)  (off)")
                    continue
                }
                let enhanced = reply.enhancedCode.map { " \($0)" } ?? ""
                let used = scenarios.filter { $0.rulesNamed.contains(rule) }.count
                out.append("  \(name)  \(reply.code)\(enhanced) \(reply.text)" + (used > 0 ? "  (\(used) cases)" : ""))
            }
            StandardStreams.out((out.joined(separator: "\n") + "\n"))
        }
    }
}
