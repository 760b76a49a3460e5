// Builds the linearizability checker (porcupine) that judges the failover benchmark's writer history.
module hakeeper.io/hack/linearizability

go 1.24.0

require github.com/anishathalye/porcupine v1.3.1
