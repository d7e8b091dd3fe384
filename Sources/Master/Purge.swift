import ArgumentParser
import Cache

/// `dfget purge REGISTRY/REPOSITORY[:TAG]`: drops the cached tag (every `Accept` set of it), or
/// every tag of the repository, so the next request asks the registry. The manifests themselves
/// stay: they are content-addressed, and a tag no longer leads to them.
struct Purge: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Drop a cached tag (or every tag of a repository): the next pull asks the registry.")

    @Option(name: .long, help: "The daemon's config file (where its cache is).")
    var config = "/etc/dragonfly/dfget.yaml"

    @Argument(help: "registry[:port]/repository[:tag], e.g. docker.io/library/alpine:3.20 or 127.0.0.1:5000/test/img")
    var reference: String

    func run() throws {
        let loaded = try loadConfig(config, for: "purge")
        guard let (authority, repository, tag) = Purge.split(reference) else {
            printError("dfget purge: \"\(reference)\" is not registry/repository[:tag]\n")
            throw ExitCode(2)
        }
        let root = PieceCache.root(dataDir: loaded.config.dataDir)
        let n = TagStore.purge(root: root, authority: authority, repository: repository, tag: tag)
        print("\(n) cached tag record\(n == 1 ? "" : "s") removed for \(authority)/\(repository)\(tag.map { ":" + $0 } ?? "")")
    }

    /// `host[:port]/repo/sub[:tag]` → (authority, repository, tag); Docker Hub's `docker.io` is
    /// the registry host the mirror asks (`registry-1.docker.io`); a default port is left out, as in `Host`.
    static func split(_ ref: String) -> (String, String, String?)? {
        guard let slash = ref.firstIndex(of: "/") else { return nil }
        var authority = String(ref[..<slash])
        var rest = String(ref[ref.index(after: slash)...])
        var tag: String?
        if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            tag = String(rest[rest.index(after: colon)...])
            rest = String(rest[..<colon])
        }
        guard !authority.isEmpty, !rest.isEmpty, tag.map({ !$0.isEmpty }) ?? true else { return nil }
        if authority == "docker.io" { authority = "registry-1.docker.io" }
        if authority.hasSuffix(":443") { authority.removeLast(4) }
        return (authority, rest, tag)
    }
}
