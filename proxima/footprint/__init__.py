"""What a run cost and what it saved: compute, transfer, money, energy and carbon, measured
on the regions' workers and set against pulling the same data to the client region.
"""
