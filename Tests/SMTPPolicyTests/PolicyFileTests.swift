import Foundation
import SMTPPolicy
import SMTPProtocol
import Testing

@Suite struct PolicyFileTests {
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    @Test func shippedDefaultSiteFileIsTheBuiltInDefault() throws {
        let environment = ["SMTPCHECK_PASSWORD": "pw"]
        let file = try Policy.load(Self.root + "/scenarios/policies/default-site.yaml", environment: environment)
        let builtIn = Policy.defaultSite(environment: environment)
        #expect(file.serverName == builtIn.serverName)
        #expect(file.localDomains == builtIn.localDomains)
        #expect(file.localUsers == builtIn.localUsers)
        #expect(file.trustedNetworks == builtIn.trustedNetworks)
        #expect(file.heloDenyList == builtIn.heloDenyList)
        #expect(file.authUsers == builtIn.authUsers)
        #expect(file.heloTiming == builtIn.heloTiming)
        #expect(file.limits == builtIn.limits)
        #expect(file.rules == builtIn.rules)
    }

    @Test func delayedFileOnlyChangesTiming() throws {
        let delayed = try Policy.load(Self.root + "/scenarios/policies/default-site-delayed.yaml", environment: [:])
        #expect(delayed.heloTiming == .noLaterThanRCPT)
        #expect(delayed.rules == Policy.defaultSite().rules)
    }

    @Test func overridesAndSwitchingRulesOff() throws {
        let text = """
            server_name: mail.site.example
            local_domains: [site.example, other.example]
            profile: postfix
            rules:
              helo.denied: off
              relay.denied: {code: 550, enhanced: 5.7.1, text: "relaying to <{rcpt}> denied"}
            """
        let policy = try Policy.parse(text, file: "site.yaml", environment: [:])
        #expect(policy.serverName == "mail.site.example")
        #expect(policy.isLocal(domain: "OTHER.example"))
        #expect(!policy.isEnabled(.heloDenied))
        #expect(
            PolicyOracle(policy: policy).refusal(.relayDenied, ["rcpt": "a@b.example"]).description
                == "550 5.7.1 relaying to <a@b.example> denied")
        #expect(policy.rules[.unknownCommand]?.code == ReplyCode(502))
    }

    @Test func aProfileCanTimeOneHeloRuleOnItsOwn() throws {
        let text = "helo_timing: at-command\nrules:\n  helo.non-fqdn: {timing: no-later-than-rcpt}\n"
        let policy = try Policy.parse(text, file: "p.yaml", environment: [:])
        #expect(policy.timing(of: .heloNonFQDN) == .noLaterThanRCPT)
        #expect(policy.timing(of: .heloInvalid) == .atCommand)
        var session = PolicySession(policy: policy, clientAddress: "192.0.2.1")
        var framer = LineFramer()
        framer.append(Array("HELO system\r\nHELO bad..name\r\n".utf8))
        #expect(framer.next().map { session.receive($0) }?.replies.first?.deferredRule == .heloNonFQDN)
        #expect(framer.next().map { session.receive($0) }?.replies.first?.rule == .heloInvalid)
    }

    @Test func passwordsComeFromTheEnvironment() throws {
        let text = "auth_users:\n  - user: bob\n    password_env: BOB_PW\n"
        #expect(try Policy.parse(text, file: "p.yaml", environment: ["BOB_PW": "x"]).authUsers.first?.password == "x")
        #expect(try Policy.parse(text, file: "p.yaml", environment: [:]).authUsers.first?.password == nil)
    }

    @Test(arguments: [
        ("server_name: [a\n", 2, nil as String?, "YAML"),
        ("sever_name: mx.example.net\n", 1, nil, "unknown field 'sever_name'"),
        ("limits:\n  error_limit: many\n", 2, "limits.error_limit", "not a whole number"),
        ("trusted_networks: [10.0.0.0/99]\n", 1, "trusted_networks[0]", "not an address or CIDR"),
        ("rules:\n  relay.deny: off\n", 2, "rules.relay.deny", "unknown rule"),
        ("rules:\n  relay.denied: {code: 554, enhanced: 4.7.1}\n", 2, "rules.relay.denied.enhanced", "does not match reply class"),
        ("profile: strict\n", 1, "profile", "unknown profile"),
        ("helo_timing: later\n", 1, "helo_timing", "unknown timing"),
        ("auth_users:\n  - user: bob\n", 2, "auth_users[0]", "password_env"),
        ("rules:\n  relay.denied: {timing: no-later-than-rcpt}\n", 2, "rules.relay.denied.timing", "only HELO-name rules"),
        ("helo_syntax: loose\n", 1, "helo_syntax", "expected one of: strict, postfix"),
        ("address_syntax: sendmail\n", 1, "address_syntax", "expected one of: strict, postfix"),
    ])
    func badFilesNameLineAndField(text: String, line: Int, field: String?, message: String) {
        do {
            _ = try Policy.parse(text, file: "bad.yaml", environment: [:])
            Issue.record("\(text) should not parse")
        } catch {
            #expect(error.file == "bad.yaml")
            #expect(error.line == line)
            if let field { #expect(error.field == field) }
            #expect(error.description.contains(message), "\(error)")
        }
    }

    @Test func builtInNamesAndMissingFiles() throws {
        #expect(try Policy.load("portable", environment: [:]).profile == .portable)
        #expect(try Policy.load("postfix", environment: [:]).profile == .postfix)
        #expect(throws: InputFileError.self) { try Policy.load("/nonexistent/policy.yaml", environment: [:]) }
    }
}

@Suite struct SubmissionPolicyFileTests {
    @Test func submissionRequiresTLS() throws {
        let submission = try Policy.load(PolicyFileTests.root + "/scenarios/policies/submission.yaml", environment: [:])
        #expect(submission.tlsRequired)
        #expect(submission.isEnabled(.authTLSRequired))
        let mx = try Policy.load(PolicyFileTests.root + "/scenarios/policies/mx.yaml", environment: [:])
        #expect(!mx.tlsRequired)
        #expect(!mx.isEnabled(.authTLSRequired))
        #expect(mx.heloTiming == .noLaterThanRCPT)
    }
}
