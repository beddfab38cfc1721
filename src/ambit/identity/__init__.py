"""Layer L2: certificates and identity in the mesh.

``ca`` signs CSRs (``profiles`` says what its certificates look like), ``certs`` holds workload
certificates and trust bundles (and never imports ``ca``), ``node_auth`` decides which identities a
node may request, ``tls`` builds the mTLS ``ssl`` contexts and reads the peer's SPIFFE ID,
``secrets`` caches and refreshes certificates per identity.
"""
