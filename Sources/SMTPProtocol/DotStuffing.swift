/// Message bodies on the wire (RFC 5321 4.5.2).
public enum DotStuffing {
    /// A message text (lines ended by LF or CRLF) as DATA sends it: CRLF line
    /// ends, a leading dot doubled, and the `CRLF.CRLF` terminator.
    public static func encode(_ text: some Sequence<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        var atLineStart = true
        var previous: UInt8 = 0
        for byte in text {
            if byte == 0x0A {
                if previous != 0x0D { out.append(0x0D) }
                out.append(0x0A)
                atLineStart = true
            } else {
                if atLineStart && byte == UInt8(ascii: ".") { out.append(byte) }
                if byte != 0x0D { atLineStart = false }
                out.append(byte)
            }
            previous = byte
        }
        if !out.isEmpty && !(out.count >= 2 && out[out.count - 2] == 0x0D && out[out.count - 1] == 0x0A) {
            out += [0x0D, 0x0A]
        }
        out += [UInt8(ascii: "."), 0x0D, 0x0A]
        return out
    }

    /// One received body line: `nil` when it is the terminating `.`,
    /// otherwise the line with a leading doubled dot undone.
    public static func decodeLine(_ line: [UInt8]) -> [UInt8]? {
        if line == [UInt8(ascii: ".")] { return nil }
        if line.first == UInt8(ascii: ".") { return Array(line.dropFirst()) }
        return line
    }
}
