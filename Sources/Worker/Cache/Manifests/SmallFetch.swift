import UV
import TLS
import HTTP

/// One small answer from a registry, collected whole before anyone acts on it (a manifest, a
/// tag's HEAD, an error's JSON): its head must come within `deadlineMs`, its body must fit `limit`.
final class SmallFetch {
    enum Failure: Error {
        case upstream(UpstreamError)
        case tooLarge(Int)
    }
    typealias Answer = (head: HTTPResponseHead, body: [UInt8])

    private let fetch: OriginFetch
    private var head: HTTPResponseHead?
    private var body: [UInt8] = []
    private var done: ((Result<Answer, Failure>) -> Void)?

    convenience init(method: String, headers: HTTPHeaders, url: UpstreamURL, pool: UpstreamPool, policy: TLSContexts.ClientPolicy,
                     deadlineMs: UInt64?, limit: Int, done: @escaping (Result<Answer, Failure>) -> Void) {
        var h = headers
        h.remove("Range")
        h.remove("If-None-Match")
        h.remove("If-Modified-Since")
        self.init(fetch: OriginFetch(method: method, headers: h, url: url, pool: pool, policy: policy), deadlineMs: deadlineMs,
                  limit: limit, done: done)
    }

    /// `fetch` prepared by the caller (a member's request).
    init(fetch: OriginFetch, deadlineMs: UInt64?, limit: Int, done: @escaping (Result<Answer, Failure>) -> Void) {
        let url = fetch.url
        self.fetch = fetch
        fetch.headDeadlineMs = deadlineMs
        self.done = done
        fetch.onHead = { [unowned self] h, framing in
            if case .length(let n) = framing, n > UInt64(limit) { return finish(.failure(.tooLarge(Int(clamping: n)))) }
            head = h
        }
        fetch.onBody = { [unowned self] b in
            body.append(contentsOf: b)
            if body.count > limit { finish(.failure(.tooLarge(body.count))) }
        }
        fetch.onEnd = { [unowned self] in
            guard let head else { return finish(.failure(.upstream(.closedBeforeResponse(url.authority)))) }
            finish(.success((head, body)))
        }
        fetch.onFail = { [unowned self] e in finish(.failure(.upstream(e))) }
    }

    /// Starts it; the fetch lives until it is done or `cancel`led.
    func start() {
        SmallFetch.live[ObjectIdentifier(self)] = self
        fetch.start()
    }

    func cancel() {
        done = nil
        fetch.cancel()
        SmallFetch.live[ObjectIdentifier(self)] = nil
    }

    private func finish(_ r: Result<Answer, Failure>) {
        let cb = done
        done = nil
        if case .failure = r { fetch.cancel() }
        SmallFetch.live[ObjectIdentifier(self)] = nil
        cb?(r)
    }

    private static let liveBox = LoopBound([ObjectIdentifier: SmallFetch]())
    private static var live: [ObjectIdentifier: SmallFetch] {
        get { liveBox.value }
        set { liveBox.value = newValue }
    }
}
