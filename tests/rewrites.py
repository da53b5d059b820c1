"""A rewrite of the tidied graph that keeps every size but changes the pixels, for tests of the answer check."""


def answer_changing(real_tidy):
    """`real_tidy`, then the column doubling of each upsampling turned into a second row doubling."""
    def wrong(model):
        count = real_tidy(model)
        for node in model.graph.node:
            if node.output[0].endswith("/copies_columns"):
                node.attribute[0].i = 1
        return count

    return wrong
