import SMTPFuzzing

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzServer(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    FuzzHarness.run(.server, UnsafeBufferPointer(start: data, count: count))
    return 0
}
