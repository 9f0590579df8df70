"""The demo CPU work: a pure-Python loop that holds the GIL the whole time, so threads cannot help."""


def count_primes(below: int) -> int:
    """Primes < below by trial division: deliberately plain Python bytecode, no C fast paths."""
    count = 0
    for candidate in range(2, below):
        divisor = 2
        while divisor * divisor <= candidate:
            if candidate % divisor == 0:
                break
            divisor += 1
        else:
            count += 1
    return count
