import ArgumentParser

/// `--shard I/N`: this process takes the I-th of N equal parts of the work,
/// dealt round-robin (item k goes to shard k mod N + 1), so that every
/// shard of a fleet computes the same split from the same command line,
/// with no coordination, and `smtpcheck merge` puts the parts back together.
struct Shard: Sendable, Hashable, ExpressibleByArgument, CustomStringConvertible {
    /// 1-based.
    let index: Int
    let count: Int

    static let maximumCount = 10_000

    init?(argument: String) {
        let parts = argument.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let index = Int(parts[0]), let count = Int(parts[1]), count >= 1, count <= Self.maximumCount,
            index >= 1, index <= count
        else { return nil }
        self.index = index
        self.count = count
    }

    init(index: Int, count: Int) {
        self.index = index
        self.count = count
    }

    var description: String { "\(self.index)/\(self.count)" }

    static var defaultCompletionKind: CompletionKind { .default }

    /// Whether the item at 0-based position `position` is this shard's.
    func takes(_ position: Int) -> Bool { position % self.count == self.index - 1 }

    /// This shard's items, in their order.
    func part<C: Collection>(_ items: C) -> [C.Element] {
        items.enumerated().filter { self.takes($0.offset) }.map(\.element)
    }
}

/// The `--shard` option as run, check and replay take it.
struct ShardOption: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Take the I-th of N parts of the work (1/4, 2/4, ...), dealt round-robin; write --format json and join the parts with smtpcheck merge.",
            valueName: "I/N"))
    var shard: Shard?

    /// A shard writes what `merge` reads: JSON Lines.
    func validate(format: ReportOptions.Format) throws {
        if self.shard != nil && format != .json {
            throw ValidationError("--shard writes a part for smtpcheck merge: give --format json (merge writes any format)")
        }
    }
}
