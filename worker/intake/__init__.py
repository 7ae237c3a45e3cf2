"""From Stream's word to ledger records: webhook verification and parsing (`webhook`), recording a
file with its transfers (`record`), call-level routes (`resolve`, `routing`), object keys, SQS intake
and `archiver try`'s download permits."""
