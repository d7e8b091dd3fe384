import Foundation

/// A `regx` of dfget.yaml, with the reference's semantics everywhere it appears (`proxies`,
/// `hijackHTTPS.hosts`): a search anywhere in the text, so `your.private.registry` matches
/// `your.private.registry:443` (and, unanchored, longer names too).
public struct Pattern: @unchecked Sendable {
    // NSRegularExpression is immutable and documented thread-safe; it is just not marked Sendable.
    public let source: String
    private let regex: NSRegularExpression

    public init?(_ source: String) {
        guard let re = try? NSRegularExpression(pattern: source) else { return nil }
        self.source = source
        regex = re
    }

    public func matches(_ text: String) -> Bool {
        regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }

    /// Every match replaced by `template` (`$1` for groups).
    public func replacing(in text: String, with template: String) -> String {
        regex.stringByReplacingMatches(in: text, range: NSRange(text.startIndex..., in: text), withTemplate: template)
    }
}
