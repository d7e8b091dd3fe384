"""Test PKI made with the openssl CLI: a registry CA with a server certificate for registry.test,
a separate CA for the daemon's hijacking (the seed's recipe), and a client certificate."""
import os, subprocess


def sh(*args, cwd):
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)


def make(d):
    os.makedirs(d, exist_ok=True)
    if os.path.exists(os.path.join(d, "done")):
        return d
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-sha256", "-keyout", "test-ca.key",
       "-out", "test-ca.crt", "-subj", "/CN=dfget e2e registry CA", "-addext", "basicConstraints=critical,CA:TRUE",
       "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    for name, san, eku in [("registry.test", "DNS:registry.test,DNS:localhost,IP:127.0.0.1", "serverAuth"),
                           ("client", "DNS:client.test", "clientAuth")]:
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                    f"extendedKeyUsage={eku}\nsubjectAltName={san}\n")
        sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
           "-subj", f"/CN={name}", cwd=d)
        sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "test-ca.crt", "-CAkey", "test-ca.key",
           "-CAcreateserial", "-days", "30", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)
    # The seed's recipe for the hijacking CA (openssl genrsa + req + x509 with v3_ca).
    with open(os.path.join(d, "openssl.conf"), "w") as f:
        f.write("[ req ]\ndistinguished_name = dn\nprompt = no\nextensions = v3_ca\nreq_extensions = v3_ca\n"
                "[ dn ]\nCN = dfget e2e hijack CA\n[ v3_ca ]\nbasicConstraints = CA:TRUE\n")
    sh("openssl", "genrsa", "-out", "ca.key", "2048", cwd=d)
    sh("openssl", "req", "-new", "-key", "ca.key", "-nodes", "-out", "ca.csr", "-config", "openssl.conf", cwd=d)
    sh("openssl", "x509", "-req", "-days", "30", "-extfile", "openssl.conf", "-extensions", "v3_ca", "-in", "ca.csr",
       "-signkey", "ca.key", "-out", "ca.crt", cwd=d)
    os.chmod(os.path.join(d, "ca.key"), 0o600)
    # Token-auth signing key and certificate (the registry's rootcertbundle).
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-sha256", "-keyout", "token.key",
       "-out", "token.crt", "-subj", "/CN=dfget e2e token issuer", cwd=d)
    with open(os.path.join(d, "bundle-with-hijack-ca.crt"), "w") as f:
        f.write(open("/etc/ssl/certs/ca-certificates.crt").read() + open(os.path.join(d, "ca.crt")).read())
    open(os.path.join(d, "done"), "w").close()
    return d
