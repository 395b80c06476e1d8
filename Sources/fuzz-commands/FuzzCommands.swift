import SMTPFuzzing

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCommands(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    FuzzHarness.run(.commands, UnsafeBufferPointer(start: data, count: count))
    return 0
}
