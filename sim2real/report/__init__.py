"""The HTML report: the study headline (:mod:`.study`)."""
