"""Published numbers of the replicated papers, as plain data with their sources and confirmation flags."""
