import Testing

@testable import SMTPCapture

/// The reading thread lends payloads from the mapped capture; the pages
/// from the first octet any worker has yet to copy stay mapped, and no
/// others (the rest are let go behind the read, so memory stays flat).
@Suite struct LendingTests {
    /// What a worker reports when it has finished a batch.
    static func finished(_ worker: Int, through packet: Int) -> ParallelRead.Output {
        ParallelRead.Output(worker: worker, events: [], through: packet)
    }

    @Test func theOldestBatchAWorkerHasNotFinishedHoldsItsPages() {
        var lending = ParallelRead.Lending()
        var merge = ParallelRead.Merge(workers: 2)
        #expect(lending.heldFrom == nil)
        // The first payload lent must be held at once; later ones in the
        // same batch lie after it.
        let firstHeld = lending.lent(at: 100)
        #expect(firstHeld)
        let laterHeld = lending.lent(at: 200)
        #expect(!laterHeld)
        #expect(lending.heldFrom == 100)
        lending.flushed(through: 1024)
        // The next batch's first payload: the sent batch still holds from 100.
        let nextBatchHeld = lending.lent(at: 5_000)
        #expect(!nextBatchHeld)
        #expect(lending.heldFrom == 100)
        // One worker past the first batch is not enough.
        merge.add(Self.finished(0, through: 1024))
        lending.copied(through: merge.everyoneThrough)
        #expect(lending.heldFrom == 100)
        merge.add(Self.finished(1, through: 1024))
        lending.copied(through: merge.everyoneThrough)
        #expect(lending.heldFrom == 5_000)
        lending.flushed(through: 2048)
        merge.add(Self.finished(1, through: 2048))
        lending.copied(through: merge.everyoneThrough)
        #expect(lending.heldFrom == 5_000)
        merge.add(Self.finished(0, through: 2048))
        lending.copied(through: merge.everyoneThrough)
        #expect(lending.heldFrom == nil)
        // A batch that lent nothing holds nothing.
        lending.flushed(through: 3072)
        #expect(lending.heldFrom == nil)
        let freshHeld = lending.lent(at: 9_000)
        #expect(freshHeld)
    }

    @Test func theEndOfTheReadLetsEverythingGo() {
        var lending = ParallelRead.Lending()
        var merge = ParallelRead.Merge(workers: 3)
        let firstHeld = lending.lent(at: 24)
        #expect(firstHeld)
        lending.flushed(through: 10)
        for worker in 0..<3 { merge.add(Self.finished(worker, through: Int.max)) }
        lending.copied(through: merge.everyoneThrough)
        #expect(lending.heldFrom == nil)
        #expect(merge.finished)
    }
}
