"""Real SIP peers for the interop tests: SIPp, baresip and linphonec, driven on 127.0.0.1.

One module per peer (`sipp`, `baresip`, `linphonec`), plus the plumbing they share: free ports
(`ports`), a self-signed certificate (`certs`), a TLS tunnel for SIPp, whose Debian build has no
TLS (`tls_tunnel`), a loopback packet capture (`capture`) and a private network namespace
(`netns`). Nothing here imports dialbridge: the harness is tested on its own, peer against peer.
"""
