"""The clustering loop of a ReplicatedDatabase, MOCO's pattern: gather -> classify -> plan
-> act, tied together by loop.Cluster.step, which a pass calls every probeInterval. No
Kubernetes here. flavor adapts the SQL to MySQL or MariaDB; gtid does the set arithmetic;
lease is the primary's self-fencing; ops is the only way to the servers (pymysql there, an
in-memory fleet in the unit tier)."""

from hakeeper.replicateddatabase.clustering.loop import Cluster, StepResult
from hakeeper.replicateddatabase.clustering.members import Credentials, Member, MemberState
from hakeeper.replicateddatabase.clustering.memory import LoopMemory
from hakeeper.replicateddatabase.clustering.policy import Policy

__all__ = ["Cluster", "Credentials", "LoopMemory", "Member", "MemberState", "Policy", "StepResult"]
