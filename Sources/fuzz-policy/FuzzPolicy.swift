import SMTPFuzzing

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPolicy(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    FuzzHarness.run(.policy, UnsafeBufferPointer(start: data, count: count))
    return 0
}
