import Foundation
import SMTPProtocol

extension Policy {
    /// The names `--policy` accepts besides a file path: the default site
    /// under each profile, and the policies shipped in the binary.
    public static let builtInNames = ["default", "documented", "postfix", "portable"] + builtInFiles.map(\.name)

    /// A shipped policy by its name (`mx`), or by its path in the repository
    /// (`scenarios/policies/mx.yaml`, as `extends:` names one), for use
    /// where no such file exists on disk.
    static func builtInFile(_ nameOrPath: String) -> (file: String, text: String)? {
        let path = nameOrPath.hasPrefix("./") ? String(nameOrPath.dropFirst(2)) : nameOrPath
        guard let found = builtInFiles.first(where: { $0.name == path || $0.file == path }) else { return nil }
        return (found.file, found.text)
    }

    /// A built-in policy by name, or a policy file by path.
    public static func load(_ nameOrPath: String, environment: [String: String]) throws(InputFileError) -> Policy {
        try load(nameOrPath, environment: environment, extending: [])
    }

    /// `extending` holds the files that extend this one, to refuse a cycle.
    static func load(_ nameOrPath: String, environment: [String: String], extending: [String]) throws(InputFileError) -> Policy {
        if nameOrPath == "default" { return .defaultSite(profile: .documented, environment: environment) }
        if let profile = Profile(rawValue: nameOrPath), !FileManager.default.fileExists(atPath: nameOrPath) {
            return .defaultSite(profile: profile, environment: environment)
        }
        if !FileManager.default.fileExists(atPath: nameOrPath), let builtIn = builtInFile(nameOrPath) {
            return try parse(builtIn.text, file: builtIn.file, environment: environment, extending: extending)
        }
        guard let data = FileManager.default.contents(atPath: nameOrPath) else {
            throw InputFileError(
                file: nameOrPath,
                message: "cannot read the policy file (built-in policies: \(builtInNames.joined(separator: ", ")))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw InputFileError(file: nameOrPath, message: "the policy file is not UTF-8 text")
        }
        return try parse(text, file: nameOrPath, environment: environment, extending: extending)
    }

    static let fields: Set<String> = [
        "server_name", "local_domains", "local_users", "trusted_networks", "helo_deny", "auth_users", "profile",
        "helo_timing", "helo_syntax", "address_syntax", "limits", "rules", "tls_required", "xclient_hosts", "proxy_hosts",
        "extends", "auth_requires_tls", "auth_required", "helo_checks_exempt", "pipelining_after_tls",
    ]

    /// Parses a policy file. Fields it leaves out keep the default site's values.
    /// `extends: FILE` (relative to this file) starts from that policy
    /// instead of the default site; what this file gives overrides it.
    public static func parse(
        _ text: String, file: String, environment: [String: String], extending: [String] = []
    ) throws(InputFileError) -> Policy {
        let root = try YAMLValue.parse(text, file: file)
        let fields = try root.fields(allowed: fields)
        let profile = try fields["profile"]?.choice("profile", as: Profile.self) ?? .documented
        var policy: Policy
        if let value = fields["extends"] {
            let name = try value.string()
            let path = name.hasPrefix("/") ? name : ((file as NSString).deletingLastPathComponent as NSString).appendingPathComponent(name)
            guard !extending.contains(path), path != file else { throw value.error("'\(name)' extends this file again (a cycle)") }
            guard fields["profile"] == nil else { throw value.error("a policy that extends another takes its profile from it") }
            policy = try load(path, environment: environment, extending: extending + [file])
        } else {
            policy = Policy.defaultSite(profile: profile, environment: environment)
        }
        policy.source = file
        if let value = fields["server_name"] {
            let name = try value.string()
            guard DomainName.isValid(name) else { throw value.error("'\(name)' is not a valid host name") }
            policy.serverName = name
        }
        if let value = fields["local_domains"] {
            policy.localDomains = try value.strings()
            for domain in policy.localDomains where !DomainName.isValid(domain) {
                throw value.error("'\(domain)' is not a valid domain")
            }
        }
        if let value = fields["local_users"] { policy.localUsers = try value.strings().map { $0.lowercased() } }
        if let value = fields["helo_deny"] { policy.heloDenyList = try value.strings() }
        func networks(_ value: YAMLValue) throws(InputFileError) -> [IPNetwork] {
            var out: [IPNetwork] = []
            for item in try value.sequence() {
                let text = try item.string()
                guard let network = IPNetwork(text) else { throw item.error("'\(text)' is not an address or CIDR network") }
                out.append(network)
            }
            return out
        }
        if let value = fields["trusted_networks"] { policy.trustedNetworks = try networks(value) }
        if let value = fields["xclient_hosts"] { policy.xclientHosts = try networks(value) }
        if let value = fields["proxy_hosts"] { policy.proxyHosts = try networks(value) }
        if let value = fields["auth_users"] {
            policy.authUsers = []
            for item in try value.sequence() {
                let entry = try item.fields(allowed: ["user", "password_env", "password", "token_env", "address"])
                var token: String?
                if let tokenVariable = entry["token_env"] { token = environment[try tokenVariable.string()] }
                guard let user = entry["user"] else { throw item.error("an AUTH user needs 'user'") }
                var address: String?
                if let value = entry["address"] {
                    let text = try value.string()
                    guard case .success = EnvelopeArgument.parseMail("FROM:<\(text)>") else {
                        throw value.error("'\(text)' is not a mailbox (user@domain)")
                    }
                    address = text
                }
                if let variable = entry["password_env"] {
                    let name = try variable.string()
                    policy.authUsers.append(
                        AuthUser(
                            name: try user.string(), password: environment[name], passwordSource: "$\(name)", oauthToken: token,
                            address: address))
                } else if let password = entry["password"] {
                    policy.authUsers.append(
                        AuthUser(
                            name: try user.string(), password: try password.string(), passwordSource: file, oauthToken: token,
                            address: address))
                } else {
                    throw item.error("an AUTH user needs 'password_env' (or 'password')")
                }
            }
        }
        if let value = fields["helo_syntax"] { policy.heloSyntax = try value.choice("helo_syntax") }
        if let value = fields["address_syntax"] { policy.addressSyntax = try value.choice("address_syntax") }
        if let value = fields["helo_timing"] { policy.heloTiming = try value.choice("timing") }
        if let value = fields["tls_required"] { policy.tlsRequired = try value.bool() }
        if let value = fields["auth_requires_tls"] { policy.authRequiresTLS = try value.bool() }
        if fields["tls_required"] != nil || fields["auth_requires_tls"] != nil {
            let needed = policy.tlsRequired || policy.authRequiresTLS
            policy.rules[.authTLSRequired] = needed ? RuleCatalogue.documented[.authTLSRequired] : nil
        }
        if let value = fields["auth_required"] {
            policy.authRequired = try value.bool()
            policy.rules[.authRequired] = policy.authRequired ? RuleCatalogue.documented[.authRequired] : nil
        }
        if let value = fields["helo_checks_exempt"] {
            policy.heloExempt = []
            for item in try value.sequence() { policy.heloExempt.insert(try item.choice("HELO exemption")) }
        }
        if let value = fields["pipelining_after_tls"] { policy.pipeliningAfterTLS = try value.choice("pipelining_after_tls") }
        if let value = fields["limits"] {
            let limits = try value.fields(allowed: Set(Limits.Name.allCases.map(\.rawValue)))
            for name in Limits.Name.allCases where limits[name.rawValue] != nil { policy.statedLimits.insert(name) }
            if let v = limits["greet_pause_ms"] { policy.limits.greetPauseMilliseconds = try v.int(in: 0...30_000) }
            if let v = limits["error_limit"] { policy.limits.errorLimit = try v.int(in: 1...1000) }
            if let v = limits["max_recipients"] { policy.limits.maxRecipients = try v.int(in: 1...100_000) }
            if let v = limits["message_size"] { policy.limits.messageSize = try v.int(in: 1...Int(Int32.max)) }
            if let v = limits["idle_timeout"] { policy.limits.idleTimeout = try v.int(in: 1...86_400) }
            if let v = limits["command_line_length"] { policy.limits.commandLineLength = try v.int(in: 512...65_536) }
            if let v = limits["command_timeout"] { policy.limits.commandTimeout = try v.int(in: 1...86_400) }
            if let v = limits["connections_per_client"] { policy.limits.connectionsPerClient = try v.int(in: 0...100_000) }
        }
        if let value = fields["rules"] {
            for (key, entry) in try value.mapping() {
                let rule = RuleID(rawValue: key)
                guard RuleCatalogue.documented[rule] != nil else {
                    throw entry.error("unknown rule '\(key)' (`smtpcheck list` shows the rules)")
                }
                if entry.isScalar {
                    guard try !entry.bool() else { continue }
                    policy.rules[rule] = nil
                    continue
                }
                let spec = try entry.fields(allowed: ["code", "enhanced", "text", "timing"])
                if let timingValue = spec["timing"] {
                    let timing = try timingValue.choice("timing", as: RuleTiming.self)
                    guard RuleID.heloNameRules.contains(rule) || timing == .atCommand else {
                        throw timingValue.error("only HELO-name rules can come later than their command")
                    }
                    policy.ruleTimings[rule] = timing
                }
                var reply = policy.rules[rule] ?? RuleCatalogue.documented[rule] ?? RuleReply(550, nil, "")
                if let code = spec["code"] {
                    let number = try code.int(in: 400...599)
                    reply.code = ReplyCode(number)
                }
                if let enhanced = spec["enhanced"] {
                    let text = try enhanced.string()
                    if text == "none" {
                        reply.enhancedCode = nil
                    } else {
                        guard let parsed = EnhancedStatusCode(text) else {
                            throw enhanced.error("'\(text)' is not an enhanced status code")
                        }
                        guard parsed.codeClass == reply.code.value / 100 else {
                            throw enhanced.error("enhanced code \(parsed) does not match reply class \(reply.code.value / 100)")
                        }
                        reply.enhancedCode = parsed
                    }
                }
                if let text = spec["text"] { reply.text = try text.string() }
                policy.rules[rule] = reply
            }
        }
        return policy
    }
}
