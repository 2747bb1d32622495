"""The audit trail: append-only events, sealed into an HMAC chain that reveals any later change.

Writers (``record``) only insert rows, in their own transaction, with no lock shared across
requests. A sealer (``seal``) later gives unsealed rows the next chain positions, in id order as
far as they are visible, each with ``hash = HMAC(key, prev_hash || canonical event || position)``.
A row committed late, out of id order, is simply sealed later: it can neither break the chain nor
stay outside it. ``verify`` walks the chain and names the first event that does not fit.
``observe`` lets an in-process listener (metrics) see each event once its transaction commits.
"""

from broker.audit.chain import AuditKey, VerifyResult, seal, sealed_count, verify
from broker.audit.events import record, record_hot
from broker.audit.keystore import AuditKeys, UnknownAuditKey
from broker.audit.observers import ObservedEvent, observe
from broker.audit.outcome import Outcome

__all__ = ["AuditKey", "AuditKeys", "ObservedEvent", "Outcome", "UnknownAuditKey", "VerifyResult", "observe", "record",
           "record_hot", "seal", "sealed_count", "verify"]
