import SMTPFuzzing

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAddresses(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    FuzzHarness.run(.addresses, UnsafeBufferPointer(start: data, count: count))
    return 0
}
