import SMTPFuzzing

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzScenario(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    FuzzHarness.run(.scenario, UnsafeBufferPointer(start: data, count: count))
    return 0
}
