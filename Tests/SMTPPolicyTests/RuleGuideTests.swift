import SMTPPolicy
import Testing

/// `smtpcheck explain` has something to say about every rule.
@Suite struct RuleGuideTests {
    @Test func everyRuleHasItsGuide() {
        #expect(Set(RuleCatalogue.guides.keys) == Set(RuleCatalogue.documented.keys))
        for (rule, guide) in RuleCatalogue.guides {
            #expect(!guide.when.isEmpty && !guide.references.isEmpty && !guide.failure.isEmpty && !guide.fix.isEmpty, "\(rule)")
        }
    }
}
