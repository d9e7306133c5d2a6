"""The `fusionrec` command line."""
