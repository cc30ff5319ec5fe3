"""Development tooling shared by tests/, scripts/ and benchmarks/: a throwaway PostgreSQL, service
processes, the external tools (helm, Envoy, grpcurl), certificates and the mesh in a box.

Nothing here imports ``tests``; the tests import from here.
"""
