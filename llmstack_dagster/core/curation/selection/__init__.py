"""Data selection and mixing: DSIR per domain, then UniMax / alpha / attribute sampling."""
