"""Drawing answers with supervision's annotators, and the teaching view's explanations."""
