/// Times as text, without a formatter object: a capture's sessions are
/// rendered by the thousand on several threads, where Foundation's
/// formatters (ICU underneath) cost more than the rest of the rendering.
public enum TimeText {
    /// Seconds with milliseconds, right-aligned in eight columns, as
    /// `String(format: "%8.3f", seconds)` writes them.
    public static func seconds(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0, seconds < 1e12 else { return String(format: "%8.3f", seconds) }
        let milliseconds = Int((seconds * 1000).rounded())
        let fraction = milliseconds % 1000
        let text = "\(milliseconds / 1000)." + (fraction < 10 ? "00" : fraction < 100 ? "0" : "") + "\(fraction)"
        return text.count < 8 ? String(repeating: " ", count: 8 - text.count) + text : text
    }

    /// `2023-11-14T22:13:20.123Z`: UTC, milliseconds (RFC 3339), the form
    /// `ISO8601DateFormatter` writes with `.withInternetDateTime` and
    /// `.withFractionalSeconds`.
    public static func iso8601(sinceEpoch seconds: Double) -> String {
        guard seconds.isFinite, abs(seconds) < 1e11 else { return "\(seconds)" }
        // Rounded to the millisecond from 2001-01-01, as Foundation's Date
        // holds a time, so that both texts agree to the last digit.
        let milliseconds = Int(((seconds - 978_307_200) * 1000 + 0.5).rounded(.down)) + 978_307_200_000
        let (days, dayMilliseconds) = milliseconds.quotientAndRemainder(dividingBy: 86_400_000)
        let (day, inDay) = dayMilliseconds < 0 ? (days - 1, dayMilliseconds + 86_400_000) : (days, dayMilliseconds)
        // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
        let z = day + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shifted = (5 * dayOfYear + 2) / 153
        let dayOfMonth = dayOfYear - (153 * shifted + 2) / 5 + 1
        let month = shifted < 10 ? shifted + 3 : shifted - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let fraction = inDay % 1000
        let millis = (fraction < 10 ? "00" : fraction < 100 ? "0" : "") + "\(fraction)"
        let secondsOfDay = inDay / 1000
        return
            "\(year)-\(two(month))-\(two(dayOfMonth))T\(two(secondsOfDay / 3600)):\(two(secondsOfDay / 60 % 60)):\(two(secondsOfDay % 60)).\(millis)Z"
    }
}
