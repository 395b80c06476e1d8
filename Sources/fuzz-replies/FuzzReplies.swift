import SMTPFuzzing

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzReplies(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    FuzzHarness.run(.replies, UnsafeBufferPointer(start: data, count: count))
    return 0
}
