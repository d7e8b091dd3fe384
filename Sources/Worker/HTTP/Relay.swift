import UV

/// How an origin's response reaches a client: shared by pass-through, the cache's continuation from
/// the origin and its authorization checks.
extension Exchange {
    /// The response body from the origin to the client, paused while the client's socket is backed
    /// up; the exchange finishes with the body.
    package func relayBody(from fetch: OriginFetch) {
        fetch.onBody = { [self] b in
            sendBody(b)
            if isWriteBlocked { fetch.pauseResponse() }
        }
        onWritable = { fetch.resumeResponse() }
        fetch.onEnd = { [self] in finish() }
    }

    /// 502 with the reason, or an abort when the client already has a head.
    package func failUpstream(_ error: UpstreamError) {
        let reason = error.description
        logFields.append(("error", .string(reason)))
        if headSent { abort(reason: reason) } else { respond(status: error.status, body: reason + "\n") }
    }
}
