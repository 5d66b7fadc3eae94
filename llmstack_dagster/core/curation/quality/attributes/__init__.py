"""Document attributes: quality class, toxicity and domain category, each with an offline CPU
default and a Hugging Face model option."""
