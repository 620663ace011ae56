import { expect } from 'chai';
import { parseQuorum, required } from '../../lib/core/quorum.ts';

describe('quorum parameters', () => {
  it('accepts 1..N and the named levels', () => {
    expect(parseQuorum('w', '1', 3)).to.equal(1);
    expect(parseQuorum('w', '3', 3)).to.equal(3);
    for (const s of ['one', 'quorum', 'all']) expect(parseQuorum('r', s, 3)).to.equal(s);
  });

  it('rejects 0, above N, non-numbers and odd spellings', () => {
    for (const s of ['0', '4', '99', 'abc', '', '-1', '1.5', ' 2', 'ALL', '0x2', '2e0']) {
      expect(() => parseQuorum('w', s, 3), s).to.throw(/w must/);
    }
  });

  it('scales named levels with the replica count and keeps numbers as asked', () => {
    expect(required('quorum', 3)).to.equal(2);
    expect(required('quorum', 5)).to.equal(3);
    expect(required('quorum', 1)).to.equal(1);
    expect(required('all', 2)).to.equal(2);
    expect(required('one', 3)).to.equal(1);
    expect(required(3, 1)).to.equal(3);
  });
});
