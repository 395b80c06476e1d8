// swift-tools-version: 6.0
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

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
            dependencies: [.product(name: "Crypto", package: "swift-crypto")],
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
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SMTPServer",
            dependencies: [
                "SMTPProtocol", "SMTPPolicy", "SMTPCodec",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SMTPClient",
            dependencies: [
                "SMTPProtocol", "SMTPCodec",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
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
                "SMTPProtocol", "SMTPPolicy", "SMTPScenarios", "SMTPClient", "SMTPCodec", "SMTPServer", "SMTPCapture",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
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
                "SMTPProtocol", "SMTPPolicy", "SMTPServer", "SMTPScenarios", "SMTPRunner", "SMTPReport", "SMTPCapture", "SMTPCodec",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "smtpcheck-bench",
            dependencies: ["SMTPCapture"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SMTPTestSupport",
            dependencies: [
                "SMTPPolicy", "SMTPServer", "SMTPCodec", "SMTPScenarios", "SMTPRunner", "SMTPReport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
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
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
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
                "SMTPProtocol", "SMTPPolicy", "SMTPServer", "SMTPCodec", "SMTPTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SMTPRunnerTests",
            dependencies: [
                "SMTPProtocol", "SMTPPolicy", "SMTPServer", "SMTPClient", "SMTPScenarios", "SMTPRunner", "SMTPReport", "SMTPCodec",
                "SMTPCapture", "SMTPTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SMTPReportTests",
            dependencies: [
                "SMTPProtocol", "SMTPPolicy", "SMTPScenarios", "SMTPRunner", "SMTPReport", "SMTPServer", "SMTPCapture",
                "SMTPTestSupport",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "smtpcheckTests",
            dependencies: ["smtpcheck", "SMTPTestSupport"],
            swiftSettings: swiftSettings
        ),
    ]
)
