import UV

/// How an origin's response reaches a client: shared by pass-through, the cache's continuation from
/// the origin and its authorization checks.
extension Exchange {
    /// The response body from the origin to the client, paused while the client's socket is backed
    /// up; the exchange finishes with the body. With a verifier, a body that is not the blob ends
    /// in an abort, never a clean end.
    /// `received`: told how many body bytes came from the origin (before any are held back), so a
    /// caller can ask for the rest from there if the fetch breaks.
    package func relayBody(from fetch: OriginFetch, verifier: BlobVerifier? = nil, received: ((Int) -> Void)? = nil) {
        fetch.onBody = { [self] b in
            received?(b.count)
            if let verifier { verifier.pass(b) { sendBody($0) } } else { sendBody(b) }
            if isWriteBlocked { fetch.pauseResponse() }
        }
        onWritable = { fetch.resumeResponse() }
        fetch.onEnd = { [self] in
            if let verifier, !verifier.finish(send: { sendBody($0) }) {
                Log.shared.error("blob does not match its digest: response aborted", ["digest": "sha256:" + verifier.digest, "url": request.target])
                abort(reason: "blob does not match its digest sha256:\(verifier.digest)")
                return
            }
            finish()
        }
    }

    /// 502 with the reason, or an abort when the client already has a head.
    package func failUpstream(_ error: UpstreamError) {
        let reason = error.description
        logFields.append(("error", .string(reason)))
        if headSent { abort(reason: reason) } else { respond(status: error.status, body: reason + "\n") }
    }
}
