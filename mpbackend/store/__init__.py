"""The store: one SQLite database per run, written by the service, read by anyone.

    service process: Internal --> writer.RunWriter --transactions--> run.db (WAL)
    any process:     api, cli, report, end summary --> reader.RunReader --> run.db

``schema`` is the stored form (tables, value encodings, the transaction helper),
``writer`` the service's single writer, ``reader`` the read-only side. This
package imports only ``mpbackend.shared``: neither process's own code.
"""
