// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "dfget",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "dfget", targets: ["Master"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // Mechanism only: the umbrella header over libuv and OpenSSL plus wrappers for what Swift cannot import.
        .target(
            name: "CUV",
            linkerSettings: [.linkedLibrary("uv"), .linkedLibrary("ssl"), .linkedLibrary("crypto")]
        ),
        // The data plane, the config model and the libuv runtime shared with the master.
        .target(
            name: "Worker",
            dependencies: ["CUV", .product(name: "Yams", package: "Yams")],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .executableTarget(
            name: "Master",
            dependencies: ["Worker", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .testTarget(
            name: "WorkerTests",
            dependencies: ["Worker"],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
    ]
)
