"""The `archiver` command: `app` assembles the Typer app from one module per command group;
`_boot` holds what every command needs (settings, the ledger, exit codes)."""
