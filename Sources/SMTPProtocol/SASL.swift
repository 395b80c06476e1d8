import Crypto
import Foundation

/// SASL encodings for AUTH (RFC 4954, RFC 4616 PLAIN, the LOGIN draft).
public enum SASL {
    public static func base64(_ bytes: some Sequence<UInt8>) -> String {
        Data(bytes).base64EncodedString()
    }

    /// Strict decoding: `nil` for anything that is not canonical base64.
    public static func decodeBase64(_ text: some StringProtocol) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        // Padding only at the end, at most two octets of it.
        let padding = utf8.reversed().prefix { $0 == UInt8(ascii: "=") }.count
        guard padding <= 2, !utf8.dropLast(padding).contains(UInt8(ascii: "=")) else { return nil }
        guard text.utf8.count % 4 == 0,
            text.utf8.allSatisfy({
                DomainName.isLetDig($0) || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "=")
            }),
            let data = Data(base64Encoded: String(text))
        else { return nil }
        return Array(data)
    }

    /// The PLAIN message `authzid NUL authcid NUL passwd`, base64-encoded.
    public static func plainResponse(user: String, password: String, authorizationIdentity: String = "") -> String {
        base64(Array(authorizationIdentity.utf8) + [0] + Array(user.utf8) + [0] + Array(password.utf8))
    }

    public struct PlainCredentials: Sendable, Hashable {
        public var authorizationIdentity: String
        public var user: String
        public var password: String
    }

    /// Decodes a PLAIN response; `nil` if it is not three NUL-separated fields.
    public static func parsePlain(_ bytes: [UInt8]) -> PlainCredentials? {
        let fields = bytes.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count == 3, !fields[1].isEmpty else { return nil }
        return PlainCredentials(
            authorizationIdentity: String(decoding: fields[0], as: UTF8.self),
            user: String(decoding: fields[1], as: UTF8.self),
            password: String(decoding: fields[2], as: UTF8.self)
        )
    }

    /// The CRAM-MD5 response (RFC 2195): `user SP hex(HMAC-MD5(password, challenge))`, base64-encoded.
    public static func cramMD5Response(user: String, password: String, challenge: [UInt8]) -> String {
        base64(Array(user.utf8) + [0x20] + Array(cramMD5Digest(password: password, challenge: challenge).utf8))
    }

    /// Lower-case hex of HMAC-MD5 keyed with the password over the challenge.
    public static func cramMD5Digest(password: String, challenge: [UInt8]) -> String {
        let key = SymmetricKey(data: Array(password.utf8))
        let mac = HMAC<Insecure.MD5>.authenticationCode(for: challenge, using: key)
        return mac.map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined()
    }

    /// The XOAUTH2 initial response: `user=U ^A auth=Bearer T ^A ^A`, base64-encoded.
    public static func xoauth2Response(user: String, token: String) -> String {
        base64(Array("user=\(user)\u{1}auth=Bearer \(token)\u{1}\u{1}".utf8))
    }
}
