import NIOCore
import NIOPosix

/// A task executor that runs jobs on one event loop. A case whose task
/// prefers it, and whose connections live on that loop, resumes from its
/// replies and writes its commands on the loop's own thread: no hop to the
/// concurrency pool and back for every exchange (on 2 cores those thread
/// switches were most of a case's time).
public final class EventLoopExecutor: TaskExecutor, Sendable {
    public let eventLoop: any EventLoop

    public init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        self.eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }

    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    /// The loop the current task's connections are made on, where it runs
    /// on an `EventLoopExecutor` (see `run(on:_:)`).
    @TaskLocal public static var currentLoop: (any EventLoop)?

    /// Runs `body` on `eventLoop`'s thread, its connections on that loop.
    public static func run<T: Sendable>(
        on eventLoop: any EventLoop, _ body: @Sendable () async -> T
    ) async -> T {
        await withTaskExecutorPreference(EventLoopExecutor(eventLoop)) {
            await Self.$currentLoop.withValue(eventLoop) { await body() }
        }
    }
}
