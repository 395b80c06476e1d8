import SMTPFuzzing

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCapture(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    FuzzHarness.run(.capture, UnsafeBufferPointer(start: data, count: count))
    return 0
}
