"""What operators see: every metric once (`names`), the figures the workers write (`stats`, `tally`),
the Prometheus collector (`metrics`), storage health and `archiver doctor`."""
