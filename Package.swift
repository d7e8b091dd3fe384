// swift-tools-version:6.0
import PackageDescription

// Layers, each a module; dependencies point one way (down this list):
//   CUV → UV, Metrics → TLS → HTTP → Config → Cache → Registry, Proxy, Peer → Worker → Master
let mode: [SwiftSetting] = [.swiftLanguageMode(.v6)]

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
        // The libuv runtime (loop, handles, streams, timers, processes, DNS), syscalls and the log.
        .target(name: "UV", dependencies: ["CUV"], path: "Sources/Worker/UV", swiftSettings: mode),
        // What the daemon's processes share in memory: counters, rate limiters; the Prometheus text.
        .target(name: "Metrics", dependencies: ["CUV"], path: "Sources/Worker/Metrics", swiftSettings: mode),
        // OpenSSL over memory BIOs: the engine, TLS streams, trust policies, the hijack CA.
        .target(name: "TLS", dependencies: ["CUV", "UV"], path: "Sources/Worker/TLS", swiftSettings: mode),
        // HTTP/1.1: parser, framing, server connections, upstream URLs, connections, pool, origin fetch.
        .target(name: "HTTP", dependencies: ["UV", "TLS", "Metrics"], path: "Sources/Worker/HTTP", swiftSettings: mode),
        // dfget.yaml: parse, fill defaults, validate, with file:line errors.
        .target(name: "Config", dependencies: ["UV", "HTTP", .product(name: "Yams", package: "Yams")],
                path: "Sources/Worker/Config", swiftSettings: mode),
        // The piece cache shared by all workers.
        .target(name: "Cache", dependencies: ["CUV", "UV", "TLS", "HTTP", "Config", "Metrics"], path: "Sources/Worker/Cache", swiftSettings: mode),
        // What a registry allows: the cache asks it (through `AccessPolicy`) before a stored blob goes out.
        .target(name: "Registry", dependencies: ["UV", "TLS", "HTTP", "Cache", "Metrics"], path: "Sources/Worker/Registry", swiftSettings: mode),
        // Routing on the proxy port: forward proxy, tunnel, hijack, mirror.
        .target(name: "Proxy", dependencies: ["UV", "TLS", "HTTP", "Config", "Cache", "Metrics"], path: "Sources/Worker/Proxy", swiftSettings: mode),
        // The peer-exchange port.
        .target(name: "Peer", dependencies: ["UV", "TLS", "HTTP", "Config", "Cache", "Metrics"], path: "Sources/Worker/Peer", swiftSettings: mode),
        // A worker process: composes the layers on one loop.
        .target(name: "Worker", dependencies: ["UV", "TLS", "HTTP", "Config", "Cache", "Registry", "Proxy", "Peer", "Metrics"],
                path: "Sources/Worker/Runtime", swiftSettings: mode),
        // The supervisor and the command line.
        .executableTarget(
            name: "Master",
            dependencies: ["UV", "TLS", "HTTP", "Config", "Cache", "Peer", "Worker", "Metrics", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: mode
        ),
        // Fuzz targets over every parser that meets the network or the config (scripts/fuzz.sh), and
        // the driver: libFuzzer's in a fuzz build, a corpus replayer in a plain one.
        .target(name: "FuzzTargets", dependencies: ["UV", "HTTP", "Config", "Cache", "Proxy", "Peer"], path: "Tests/Fuzz/Targets",
                swiftSettings: mode),
        // bench/swarm-sim: the swarm's decisions (TaskFill, Overlay, Rendezvous, UploadAdmission) over a
        // modelled network, at any number of hosts.
        .executableTarget(name: "swarm-sim", dependencies: ["Cache", "Peer"], path: "bench/SwarmSim", swiftSettings: mode),
        .executableTarget(name: "dfget-fuzz", dependencies: ["FuzzTargets"], path: "Tests/Fuzz/Main"),
        .testTarget(
            name: "WorkerTests",
            dependencies: ["UV", "TLS", "HTTP", "Config", "Cache", "Registry", "Proxy", "Peer", "Worker", "Metrics", "FuzzTargets"],
            swiftSettings: mode
        ),
    ]
)
