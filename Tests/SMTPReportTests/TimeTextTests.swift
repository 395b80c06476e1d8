import Foundation
import SMTPReport
import Testing

/// The hand-made time texts say what Foundation's formatters say.
@Suite struct TimeTextTests {
    static let instants: [Double] = [
        0, 0.0004, 0.9995, 59.999, 86_399.999, 86_400, 951_782_400.5, 1_700_000_000.123456, 1_709_251_199.9999, 1_709_251_200,
        4_102_444_800.001, 2_000_000_000.25,
    ]

    @Test(arguments: instants)
    func iso8601IsWhatTheFormatterWrites(instant: Double) {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        #expect(TimeText.iso8601(sinceEpoch: instant) == formatter.string(from: Date(timeIntervalSince1970: instant)))
    }

    @Test(arguments: [0, 0.0004, 0.0005, 0.01, 1.5, 9.9996, 12.345, 99_999.999, 123_456_789.1, 1e13])
    func secondsAreWhatPrintfWrites(seconds: Double) {
        #expect(TimeText.seconds(seconds) == String(format: "%8.3f", seconds))
    }
}
