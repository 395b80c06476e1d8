// swift-tools-version: 6.0
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioPosix = Target.Dependency.product(name: "NIOPosix", package: "swift-nio")
let nioEmbedded = Target.Dependency.product(name: "NIOEmbedded", package: "swift-nio")
let nioTLS = Target.Dependency.product(name: "NIOTLS", package: "swift-nio")
let nioConcurrencyHelpers = Target.Dependency.product(name: "NIOConcurrencyHelpers", package: "swift-nio")
let nioSSL = Target.Dependency.product(name: "NIOSSL", package: "swift-nio-ssl")
let crypto = Target.Dependency.product(name: "Crypto", package: "swift-crypto")
let x509 = Target.Dependency.product(name: "X509", package: "swift-certificates")
/// What the client and the server each run on.
let nioConnection = [nioCore, nioConcurrencyHelpers, nioPosix, nioTLS, nioSSL]
/// libFuzzer targets, each `Sources/fuzz-NAME` (see `make fuzz`).
let fuzzTargets = ["replies", "commands", "addresses", "capture", "scenario", "policy", "server"]

let package = Package(
    name: "smtpcheck",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "smtpcheck", targets: ["smtpcheck"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
    ],
    targets: [
        .target(
            name: "SMTPProtocol",
            dependencies: [crypto],
            swiftSettings: swiftSettings
        ),
        .systemLibrary(
            name: "CPcap",
            pkgConfig: "libpcap",
            providers: [.apt(["libpcap-dev"]), .brew(["libpcap"])]
        ),
        .target(
            name: "SMTPCapture",
            dependencies: ["SMTPProtocol", "CPcap"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SMTPPolicy",
            dependencies: ["SMTPProtocol", .product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SMTPCodec",
            dependencies: [
                "SMTPProtocol",
                nioCore,
                nioTLS,
                nioSSL,
                x509,
                crypto,
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SMTPServer",
            dependencies: ["SMTPProtocol", "SMTPPolicy", "SMTPCodec", crypto] + nioConnection,
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SMTPClient",
            dependencies: ["SMTPProtocol", "SMTPCodec"] + nioConnection,
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SMTPScenarios",
            dependencies: ["SMTPProtocol", "SMTPPolicy"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SMTPRunner",
            dependencies: [
                "SMTPProtocol", "SMTPPolicy", "SMTPScenarios", "SMTPClient", "SMTPCodec", "SMTPServer", "SMTPCapture", nioCore,
                nioConcurrencyHelpers, nioPosix,
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SMTPReport",
            dependencies: ["SMTPProtocol", "SMTPPolicy", "SMTPScenarios"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "smtpcheck",
            dependencies: [
                "SMTPPolicy", "SMTPServer", "SMTPScenarios", "SMTPRunner", "SMTPReport", "SMTPCapture", "SMTPCodec",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                nioCore,
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SMTPFuzzing",
            dependencies: ["SMTPProtocol", "SMTPCapture", "SMTPPolicy", "SMTPScenarios", "SMTPServer", "SMTPReport", nioCore, nioEmbedded],
            swiftSettings: swiftSettings
        ),
    ]
        + fuzzTargets.map { name in
            .executableTarget(name: "fuzz-\(name)", dependencies: ["SMTPFuzzing"], swiftSettings: swiftSettings)
        } + [
            .executableTarget(
                name: "smtpcheck-bench",
                dependencies: ["SMTPCapture", nioCore, nioPosix, nioConcurrencyHelpers],
                swiftSettings: swiftSettings
            ),
            .target(
                name: "SMTPTestSupport",
                dependencies: [
                    "SMTPPolicy", "SMTPServer", "SMTPCodec", "SMTPScenarios", "SMTPRunner", "SMTPReport", "SMTPCapture",
                    nioCore,
                    nioPosix,
                    nioSSL,
                    x509,
                    crypto,
                ],
                swiftSettings: swiftSettings
            ),
            .testTarget(
                name: "SMTPProtocolTests",
                dependencies: ["SMTPProtocol"],
                swiftSettings: swiftSettings
            ),
            .testTarget(
                name: "SMTPCaptureTests",
                dependencies: ["SMTPProtocol", "SMTPCapture", "SMTPTestSupport"],
                swiftSettings: swiftSettings
            ),
            .testTarget(
                name: "SMTPPolicyTests",
                dependencies: ["SMTPProtocol", "SMTPPolicy"],
                swiftSettings: swiftSettings
            ),
            .testTarget(
                name: "SMTPCodecTests",
                dependencies: [
                    "SMTPProtocol", "SMTPCodec",
                    nioCore,
                    nioEmbedded,
                ],
                swiftSettings: swiftSettings
            ),
            .testTarget(
                name: "SMTPScenariosTests",
                dependencies: ["SMTPProtocol", "SMTPPolicy", "SMTPScenarios", "SMTPTestSupport"],
                swiftSettings: swiftSettings
            ),
            .testTarget(
                name: "SMTPServerTests",
                dependencies: [
                    "SMTPPolicy", "SMTPServer", "SMTPCodec", "SMTPTestSupport",
                    nioCore,
                    nioEmbedded,
                    nioSSL,
                ],
                swiftSettings: swiftSettings
            ),
            .testTarget(
                name: "SMTPRunnerTests",
                dependencies: [
                    "SMTPProtocol", "SMTPPolicy", "SMTPServer", "SMTPClient", "SMTPScenarios", "SMTPRunner", "SMTPReport", "SMTPCodec",
                    "SMTPCapture", "SMTPTestSupport",
                    nioCore, nioPosix, nioConcurrencyHelpers,
                ],
                swiftSettings: swiftSettings
            ),
            .testTarget(
                name: "SMTPReportTests",
                dependencies: [
                    "SMTPProtocol", "SMTPPolicy", "SMTPScenarios", "SMTPRunner", "SMTPReport", "SMTPServer", "SMTPTestSupport",
                ],
                swiftSettings: swiftSettings
            ),
            // The command-line tests run the built binary: "smtpcheck" is here so that it is built first.
            .testTarget(
                name: "SMTPFuzzingTests",
                dependencies: ["SMTPFuzzing", "SMTPTestSupport"],
                swiftSettings: swiftSettings
            ),
            .testTarget(
                name: "smtpcheckTests",
                dependencies: ["smtpcheck", "SMTPTestSupport", "SMTPCapture"],
                swiftSettings: swiftSettings
            ),
        ]
)
